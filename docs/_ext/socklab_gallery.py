"""sphinx-gallery scraper: every Run an example made becomes a pcap download.

After each code block, look in the example's globals for ``socklab.Run``
objects not yet published, write each one's capture next to the generated page
and return a ``:download:`` link. The file is the capture of this build's run.
"""

from pathlib import Path

import socklab


class PcapScraper:
    def __init__(self) -> None:
        self.seen: set[int] = set()

    def __repr__(self) -> str:  # sphinx-gallery hashes the config by repr
        return "PcapScraper()"

    def __call__(self, block, block_vars, gallery_conf) -> str:
        runs = [v for v in block_vars["example_globals"].values()
                if isinstance(v, socklab.Run) and id(v) not in self.seen]
        links = []
        for run in runs:
            self.seen.add(id(run))
            if not run.frames:
                continue
            target = Path(block_vars["target_file"])
            pcap = target.with_name(f"{target.stem}_{run.name}.pcap")
            run.save_pcap(pcap)
            links.append(
                f":download:`{pcap.name} <{pcap.name}>`: the {len(run.packets)} packets of this "
                "build's run, to open in Wireshark or with ``tcpdump -r``."
            )
        if not links:
            return ""
        body = "\n".join(f"   {line}" for line in links)
        return f"\n.. admonition:: Download the capture\n   :class: sl-download\n\n{body}\n\n"


#: What conf.py names in ``image_scrapers`` (by its dotted path, so the config pickles).
pcap_scraper = PcapScraper()
