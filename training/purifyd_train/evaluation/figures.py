"""The evaluation's figures: the contact sheet and the accuracy-against-ε plot (matplotlib, no display)."""
from __future__ import annotations

from pathlib import Path


def contact_sheet(clean, adv, purified, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = (("clean", clean), ("adversarial (PGD)", adv), ("purified", purified))
    fig, axes = plt.subplots(3, len(clean), figsize=(len(clean) * 0.9, 3.0))
    for r, (label, images) in enumerate(rows):
        for c, img in enumerate(images):
            ax = axes[r, c]
            arr = img.permute(1, 2, 0).cpu().numpy()
            ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]); ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=6)
    fig.suptitle(f"{title}: clean / adversarial / purified", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_sweep(sweep: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(sweep), figsize=(5 * len(sweep), 3.5))
    for ax, (attack, points) in zip(axes, sweep.items()):
        eps = [p["eps"] for p in points]
        for d in points[0]:
            if d != "eps":
                ax.plot(eps, [p[d] for p in points], marker="o", label=d, linewidth=2.5 if d == "purifier" else 1)
        ax.set_title(f"{title}: {attack}, seen classifier"); ax.set_xlabel("ε (l∞)"); ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1); ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
