from socklab._render import Group, Lines, Table


def test_table_text_aligns_columns_and_marks_emphasised_rows():
    table = Table("moment", ["a", "state"], [["x", "ESTAB"], ["long name", "CLOSE-WAIT"]], ["", "changed"])
    assert str(table).splitlines() == [
        "moment",
        "  a          state",
        "  x          ESTAB",
        "> long name  CLOSE-WAIT",
    ]


def test_empty_table_says_so_in_text_and_html():
    table = Table("moment", ["a"], [], empty="(no sockets)")
    assert "(no sockets)" in str(table)
    assert "(no sockets)" in table._repr_html_()


def test_html_escapes_cells():
    assert "&lt;script&gt;" in Table("", ["c"], [["<script>"]])._repr_html_()


def test_lines_carry_row_classes_into_html():
    lines = Lines("trace", ["a", "b"], ["", "rst"])
    assert '<span class="sl-rst">b</span>' in lines._repr_html_()
    assert str(lines) == "trace\n  a\n  b"


def test_group_joins_parts():
    group = Group([Lines("one", ["x"]), Lines("two", ["y"])])
    assert str(group) == "one\n  x\n\ntwo\n  y"
    assert group._repr_html_().count('class="socklab"') == 2
