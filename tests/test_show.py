import socklab
from socklab._render import Lines


def test_show_prints_text_in_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("SOCKLAB_OUTPUT", raising=False)
    assert socklab.show(Lines("trace", ["x"])) is None
    assert capsys.readouterr().out == "trace\n  x\n\n"


def test_show_hands_the_object_to_the_page_in_the_docs_build(capsys, monkeypatch):
    monkeypatch.setenv("SOCKLAB_OUTPUT", "html")
    view = Lines("trace", ["x"])
    assert socklab.show(view) is view
    assert capsys.readouterr().out == ""
