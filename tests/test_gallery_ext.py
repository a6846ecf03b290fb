"""The docs glue: pcap downloads and the tables generated from all runs."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from matplotlib.text import Text

import scenarios
import socklab

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))
import socklab_gallery  # noqa: E402


@pytest.fixture
def scraper(monkeypatch):
    fresh = socklab_gallery.PcapScraper()
    monkeypatch.setattr(socklab_gallery, "pcap_scraper", fresh)
    return fresh


def scrape(scraper, tmp_path, run, name="01_close_then_send"):
    target = tmp_path / "auto_examples" / "02_close" / f"{name}.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    block_vars = {"target_file": str(target), "example_globals": {"run": run}}
    return scraper(None, block_vars, {"src_dir": str(tmp_path)}), target


def site(tmp_path, *examples):
    """A Sphinx app as write_tables sees it: docs in tmp_path, the examples in tmp_path/examples."""
    for name in examples:
        (tmp_path / "examples" / "02_close").mkdir(parents=True, exist_ok=True)
        (tmp_path / "examples" / "02_close" / f"{name}.py").write_text("")
    conf = {"examples_dirs": "examples", "gallery_dirs": "auto_examples"}
    return SimpleNamespace(srcdir=str(tmp_path), confdir=str(tmp_path),
                           config=SimpleNamespace(sphinx_gallery_conf=conf))


def test_each_run_becomes_a_pcap_download_that_parses(scraper, tmp_path):
    run = socklab.run(scenarios.close_then_send)
    rst, target = scrape(scraper, tmp_path, run)
    pcap = target.with_name("01_close_then_send_close_then_send.pcap")
    assert f":download:`{pcap.name} <{pcap.name}>`" in rst and "the 7 packets" in rst
    from scapy.utils import rdpcap
    assert len(rdpcap(str(pcap))) == 7


def test_a_run_is_published_once(scraper, tmp_path):
    run = socklab.run(scenarios.close_then_send)
    scrape(scraper, tmp_path, run)
    assert scrape(scraper, tmp_path, run)[0] == ""


def test_a_truncated_capture_fails_the_build(tmp_path):
    run = socklab.run(scenarios.close_then_send)
    path = tmp_path / "cut.pcap"
    path.write_bytes(run.pcap()[:-60])
    with pytest.raises(Exception, match="cut.pcap"):
        socklab_gallery.check_pcap(path, 7)


def test_tables_list_every_summarized_run_and_every_failed_call(scraper, tmp_path):
    run = socklab.run(scenarios.close_then_send).summarize(closer="close", sends=["send #1", "send #2"])
    scrape(scraper, tmp_path, run)
    socklab_gallery.write_tables(site(tmp_path, "01_close_then_send"))
    matrix = (tmp_path / "_generated" / "matrix.md").read_text()
    errnos = (tmp_path / "_generated" / "errno.md").read_text()
    assert "| {doc}`/auto_examples/02_close/01_close_then_send` | client: close | FIN, then RST | 1 | EPIPE |" in matrix
    assert "| send #2 | server | not in the table (reset) | EPIPE |" in errnos


def test_a_build_that_ran_no_scenario_fails_instead_of_empty_tables(scraper, tmp_path):
    with pytest.raises(RuntimeError, match="no scenario ran in this build"):
        socklab_gallery.write_tables(site(tmp_path))


def test_the_tables_come_from_the_runs_on_disk_whichever_process_ran_them(scraper, tmp_path):
    first = socklab.run(scenarios.close_then_send).summarize(closer="close", sends=["send #1", "send #2"])
    scrape(scraper, tmp_path, first)
    scrape(socklab_gallery.PcapScraper(), tmp_path, socklab.run(scenarios.empty), name="02_other")  # another worker
    runs = socklab_gallery.published_runs(tmp_path, ["auto_examples/02_close/01_close_then_send",
                                                     "auto_examples/02_close/02_other"])
    assert [(doc.rsplit("/", 1)[1], run.name) for doc, run in runs] == [("01_close_then_send", "close_then_send"),
                                                                        ("02_other", "empty")]
    assert runs[0][1].call("send #2").errno == "EPIPE" and runs[0][1].summary == first.summary


def test_an_example_page_whose_runs_are_not_on_disk_fails_the_build_by_name(scraper, tmp_path):
    scrape(scraper, tmp_path, socklab.run(scenarios.close_then_send))
    with pytest.raises(RuntimeError, match="02_close/02_never_ran are not on disk"):
        socklab_gallery.write_tables(site(tmp_path, "01_close_then_send", "02_never_ran"))


def test_an_example_that_made_no_run_leaves_an_empty_list_not_an_old_one(scraper, tmp_path):
    _, target = scrape(scraper, tmp_path, socklab.run(scenarios.empty))
    scraper(None, {"target_file": str(target.with_name("02_other.py")), "example_globals": {}}, {})
    scraper(None, {"target_file": str(target), "example_globals": {}}, {})  # the first example, run again
    assert socklab_gallery.load_runs(socklab_gallery.runs_file(target)) == []


def test_generated_tables_are_not_rewritten_when_unchanged(scraper, tmp_path):
    scrape(scraper, tmp_path, socklab.run(scenarios.close_then_send).summarize(closer="close", sends=["send #1"]))
    app = site(tmp_path, "01_close_then_send")
    socklab_gallery.write_tables(app)
    matrix = tmp_path / "_generated" / "matrix.md"
    before = matrix.stat().st_mtime_ns
    socklab_gallery.write_tables(app)
    assert matrix.stat().st_mtime_ns == before  # Sphinx re-reads a page whose included file is newer


def test_bytes_values_in_generated_tables_are_code_so_quotes_stay_straight():
    table = socklab_gallery._table(["recv"], [["b'' then b'x' unread"], ["the peer's recv()"]])
    assert "``b''`` then ``b'x'`` unread" in table
    assert "the peer's recv()" in table  # prose is left as it is


def test_a_figures_alt_text_is_the_first_clause_of_its_description():
    run = socklab.run(scenarios.close_then_send)
    description = run.ladder_alt()
    alt = socklab_gallery.short_alt(description)
    assert description.startswith(alt) and len(alt) < len(description)
    assert alt == "Ladder diagram of close_then_send, client on the left, server on the right"


def test_a_long_first_clause_is_cut_at_a_word_to_the_alt_limit():
    alt = socklab_gallery.short_alt("word " * 100)
    assert len(alt) <= socklab_gallery.ALT_MAX and alt.endswith("word\u2026")


def test_a_ladder_keeps_its_smallest_text_at_11_px_on_a_phone():
    fig = socklab.run(scenarios.close_then_send).ladder()
    width = socklab_gallery.phone_min_width(fig)
    assert width == 515  # 10 pt text in a 6.5 in (468 pt) figure: 11 px at 468 * 11 / 10 px
    smallest = min(t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip())
    assert smallest * width / (fig.get_figwidth() * 72) >= 11


def test_the_error_index_fails_the_build_naming_a_listed_message_no_run_produced():
    run = socklab.run(scenarios.close_then_send)
    with pytest.raises(RuntimeError, match=r"'Connection reset by peer'.*which no scenario run of this build "
                                           r"produced \(produced: 'Broken pipe'\)"):
        socklab_gallery.error_index([("auto_examples/02_close/01_close_then_send", run)])


def test_the_error_index_files_each_failed_call_under_its_message_with_a_link_to_its_page(monkeypatch, scraper,
                                                                                          tmp_path):
    monkeypatch.setattr(socklab_gallery, "LISTED_MESSAGES", ["Broken pipe"])
    run = socklab.run(scenarios.close_then_send)
    scrape(scraper, tmp_path, run)
    socklab_gallery.write_error_index(site(tmp_path, "01_close_then_send"))
    index = (tmp_path / "_generated" / "errors.md").read_text()
    assert "(error-broken-pipe)=\n## Broken pipe\n" in index
    assert "| {ref}`Broken pipe <error-broken-pipe>` | BrokenPipeError (EPIPE) | 1 | 1 |" in index
    assert ("| {doc}`/auto_examples/02_close/01_close_then_send` | ``close_then_send`` | server: send #2 | "
            "BrokenPipeError (EPIPE) |" in index)
    assert "FIN from client, then RST from client" in index
