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


def test_show_keeps_every_view_given_at_once(capsys, monkeypatch):
    monkeypatch.setenv("SOCKLAB_OUTPUT", "html")
    html = socklab.show(Lines("one", ["x"]), Lines("two", ["y"]))._repr_html_()
    assert "one" in html and "two" in html
    monkeypatch.delenv("SOCKLAB_OUTPUT")
    socklab.show(Lines("one", ["x"]), Lines("two", ["y"]))
    assert capsys.readouterr().out == "one\n  x\n\ntwo\n  y\n\n"


def test_show_prints_a_figure_as_its_description(capsys, monkeypatch):
    monkeypatch.delenv("SOCKLAB_OUTPUT", raising=False)
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().set_title("Ladder diagram: client sends SYN", loc="left")
    socklab.show(fig)
    assert "[figure] Ladder diagram: client sends SYN" in capsys.readouterr().out
