"""The site's vocabulary rule, checked on built HTML (docs/_ext/socklab_spelling.py)."""

import sys
from pathlib import Path

import pytest

from builders import CLIENT, LISTENER, row, seed_run
from socklab._records import Finished, Snapshot, Started
from socklab._run import Run
from test_trace import SEED

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))
import socklab_spelling  # noqa: E402


def test_state_words_are_found_as_whole_words_only():
    assert socklab_spelling.state_words("client FIN-WAIT-2, server CLOSE_WAIT; close() CLOSED-ish") == [
        "FIN-WAIT-2", "CLOSE_WAIT"]


def test_a_table_that_mixes_ss_and_kernel_spellings_is_named():
    page = ('<div class="socklab"><table><tr><td>pair[1] ESTABLISHED</td><td>client TIME-WAIT</td></tr></table>'
            '</div>')
    assert socklab_spelling.problems_in(page) == [
        "table 'pair[1] ESTABLISHED client TIME-WAIT'...: ESTABLISHED (not ss's spelling)"]


def test_a_note_under_a_table_follows_the_tables_spelling():
    page = '<div class="socklab"><table><tr><td>ESTAB</td></tr></table><p class="sl-note">(was ESTABLISHED)</p></div>'
    assert socklab_spelling.problems_in(page) == ["note '(was ESTABLISHED)'...: ESTABLISHED (not ss's spelling)"]


def test_a_pictures_words_follow_rfc_9293():
    assert socklab_spelling.problems_in('<img alt="client is FIN_WAIT2 and server is CLOSE-WAIT">') == [
        "alt text 'client is FIN_WAIT2 and server is CLOSE-WAIT'...: FIN_WAIT2 (not RFC 9293's spelling)"]


def test_a_hand_written_table_is_prose_and_a_generated_one_follows_ss():
    page = ("<table><tr><td>ESTAB</td><td>ESTABLISHED</td></tr></table>"
            '<div class="sl-generated"><table><tr><td>client ESTAB</td></tr></table></div>')
    assert socklab_spelling.problems_in(page) == [
        "prose 'ESTAB ESTABLISHED'...: ESTAB / ESTABLISHED (one state spelled two ways)"]


@pytest.mark.parametrize("view", ["states", "results", "about"])
def test_socklabs_own_views_keep_the_rule(view):
    run = seed_run(SEED)
    assert socklab_spelling.problems_in(getattr(run, view)()._repr_html_()) == []


def test_a_unix_sockets_table_and_its_notes_keep_the_rule():
    from test_views import unix
    run = Run("pair", [Started("6.18.0", "netns", True, "", "", 0), Snapshot("before", 1, (unix(10, 11), unix(11, 10))),
                       Snapshot("after", 2, (unix(11, None), LISTENER, row("TIME_WAIT", *CLIENT))), Finished(3)])
    assert socklab_spelling.problems_in(run.states()._repr_html_()) == []


def test_a_whole_site_is_walked_page_by_page(tmp_path):
    (tmp_path / "a.html").write_text('<img alt="client is ESTAB">')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.html").write_text('<img alt="client is ESTABLISHED">')
    assert socklab_spelling.check_site(tmp_path) == [
        "a.html: alt text 'client is ESTAB'...: ESTAB (not RFC 9293's spelling)"]


def test_a_paragraph_may_not_spell_one_state_two_ways():
    page = "<p>the client in <code>FIN-WAIT-2</code>; <code>wait_state(client, 'FIN_WAIT2')</code></p>"
    assert socklab_spelling.problems_in(page) == [
        "prose \"the client in FIN-WAIT-2 ; wait_state(client, 'FIN_WAIT2')\"...: FIN-WAIT-2 / FIN_WAIT2 "
        "(one state spelled two ways)"]


def test_a_paragraph_may_use_any_one_spelling_per_state_and_code_listings_are_code():
    page = ("<p>ESTAB, then FIN-WAIT-2 and CLOSE_WAIT; the RFC's CLOSE call closes it (CLOSED)</p>"
            '<div class="highlight"><pre>FIN_WAIT2 FIN-WAIT-2</pre></div>'
            '<div class="sl-spellings"><table><tr><td>ESTAB</td><td>ESTABLISHED</td></tr></table></div>'
            '<dl class="py class"><dd><p>FIN_WAIT2 is FIN-WAIT-2</p></dd></dl>')
    assert socklab_spelling.problems_in(page) == []


def test_a_table_that_quotes_the_kernel_spells_as_the_kernel_does():
    page = ('<div class="socklab sl-kernel"><table><tr><td>state TCP_FIN_WAIT1 -&gt; TCP_FIN_WAIT2</td>'
            "<td>FIN-WAIT-2</td></tr></table></div>")
    assert socklab_spelling.problems_in(page) == [
        "kernel table 'state TCP_FIN_WAIT1 -> TCP_FIN_WAIT2 FIN-WAIT-2'...: FIN-WAIT-2 (not the kernel's spelling)"]
