"""t-SNE of 10,000 VAE latents: scikit-learn's defaults against vae_latent_space_visualization.py's settings.

The baseline is what a user gets from ``sklearn.manifold.TSNE(2).fit_transform(latents)``: Barnes-Hut, 1000
iterations. Ours is the script's ``tsne``: 500 iterations on every core, with scikit-learn and, when installed, with
openTSNE. Each embedding is scored as the script scores it (10-NN accuracy, trustworthiness on 5,000 points), so the
speed-up is shown to cost no quality.

    python bench/tsne_speed.py --data-dir ../shared/data
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.manifold import TSNE, trustworthiness

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vae_latent_space_visualization as lsv  # noqa: E402
from common import cli, data, devices, vae  # noqa: E402

SETTINGS = {**cli.BASE_SETTINGS, **vae.CHECKPOINT_SETTINGS}


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    device = devices.pick_device(cfg.device)
    model, _ = vae.load_or_train_vae(cfg.vae_checkpoint, cfg.data_dir, device, cfg.seed)
    images, labels = data.load_mnist(cfg.data_dir, train=False, device=device)
    latents, labels = lsv.encode(model, images), labels.cpu().numpy()
    print(f"{len(latents):,} latents of size {latents.shape[1]}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")

    candidates = {"sklearn defaults (baseline)": lambda: TSNE(2, random_state=cfg.seed).fit_transform(latents),
                  "ours, sklearn": lambda: lsv.tsne(latents, "sklearn", 30.0, 500, cfg.seed)}
    if lsv.pick_backend("auto") == "opentsne":
        candidates["ours, openTSNE"] = lambda: lsv.tsne(latents, "opentsne", 30.0, 500, cfg.seed)
    subset = np.random.default_rng(cfg.seed).permutation(len(latents))[:5000]
    print(f"\n{'':30s}{'seconds':>9s}{'ratio':>8s}{'10-NN accuracy':>16s}{'trustworthiness':>17s}")
    baseline_seconds = None
    for name, embed in candidates.items():
        start = time.perf_counter()
        embedding = embed()
        seconds = time.perf_counter() - start
        baseline_seconds = baseline_seconds or seconds
        accuracy, _ = lsv.separation(embedding, labels, subset, cfg.seed)
        trust = trustworthiness(latents[subset], embedding[subset], n_neighbors=lsv.NEIGHBOURS)
        print(f"{name:30s}{seconds:9.1f}{seconds / baseline_seconds:8.2f}{accuracy:16.4f}{trust:17.4f}", flush=True)


if __name__ == "__main__":
    cli.run(main)
