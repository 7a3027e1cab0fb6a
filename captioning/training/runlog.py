"""Per-epoch training log: metrics.jsonl, metrics.csv and a PNG of the learning curves."""
from __future__ import annotations

import csv
import json
from pathlib import Path


CURVES = ("BLEU-4", "CIDEr-D", "ROUGE-L")  # the dev metrics the PNG shows, of every dataset


def dev_series(rows: list[dict]) -> list[str]:
    """The keys the PNG plots as dev curves: each dataset's BLEU-4, CIDEr-D and ROUGE-L (``dev_<metric>``,
    or ``dev_<name>_<metric>`` with several datasets) and the selection score, where every row has them."""
    keys = [k for k in dict.fromkeys(k for r in rows for k in r)
            if k == "selection" or (k.startswith("dev_") and k.endswith(CURVES))]
    return [k for k in keys if all(k in r for r in rows)]


class RunLog:
    def __init__(self, folder: str | Path, *, enabled: bool = True):
        self.folder, self.enabled = Path(folder), enabled
        self.jsonl = self.folder / "metrics.jsonl"

    def rows(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

    def append(self, row: dict) -> None:
        """Add one epoch (replacing a row of the same epoch left by a resumed run)."""
        if not self.enabled:
            return
        rows = [r for r in self.rows() if r.get("epoch") != row.get("epoch")] + [row]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(self.folder / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self._plot(rows)

    def _plot(self, rows: list[dict]) -> None:
        try:  # optional (pip install .[train]) and slow to import: only the plot needs it
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        epochs = [r["epoch"] for r in rows]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for key in ("train_xe", "train_reward"):
            pts = [(r["epoch"], r[key]) for r in rows if key in r]
            if pts:
                axes[0].plot(*zip(*pts), marker="o", label=key)
        axes[0].set_title("training objective")
        for key in dev_series(rows):
            axes[1].plot(epochs, [r[key] for r in rows], marker="o", label=key, linestyle="--" if key == "selection" else "-")
        axes[1].set_title("dev metrics")
        for ax in axes:
            ax.set_xlabel("epoch")
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.folder / "curves.png", dpi=90)
        plt.close(fig)
