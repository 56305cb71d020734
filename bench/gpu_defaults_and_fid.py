"""On one GPU, in under ten minutes: the default runs, the DCGAN long enough to matter, a plain DCGAN beside it for
the same wall time, and the standard FIDs under both CIFAR-10 protocols, with a check of the FID against a published
figure. Prepared to be run as it is by whoever is lent a GPU; it prints each stage's seconds as it ends, a table at
the end, and writes every number to --out.

    python bench/gpu_defaults_and_fid.py --data-dir DATA --inception-weights default_1.pt --out-dir /tmp/gpu_bench \\
        --out $OUT/gpu_bench.json
    python bench/gpu_defaults_and_fid.py --smoke --device cpu --data-dir ../shared/data --budget 3600   # tiny, on a CPU

DATA holds MNIST/raw/ and cifar10-jpeg/ (or cifar-10-batches-py/). The stages, most important first, each under its
own time limit (a stage that overruns is stopped, reported, and the others still run), all within --budget seconds:

1. dcgan_cifar10.py --device cuda --epochs N with the GPU sizes its page recommends, --batch-size 128 --base-channels
   64 (the CPU's batch of 32 would leave the GPU idle), its defaults otherwise (the CIFAR-10 classifier that judges it is
   trained first), then --epochs 0 --fid inception on best.pt: 50,000 samples against the 50,000 training images,
   and 50,000 samples written to samples.npz.
2. The plain DCGAN, a baseline, for as many seconds as stage 1 spent in training steps (its per-epoch quality
   measurements not counted): pytorch/examples' dcgan recipe at 32 x 32 (bench/dcgan_speed.py's networks,
   ngf = ndf = 64: BCE, Adam 2e-4 with beta1 0.5, batch 128, N(0, 0.02) weights, float32, no flips, no weight
   average); samples drawn as that example draws them, batch norm in training mode.
3. The FIDs (bench/fid.py's main): CIFAR-10's 10,000 test images against its 50,000 training images (the
   real data's own FID, to set beside the published one), the plain DCGAN's 50,000 samples against the training
   images, and both DCGANs' first 10,000 samples against the 10,000 test images (StudioGAN's earlier protocol).
4. vae_mnist.py and gan_mnist.py with their defaults and --device cuda (gan_mnist.py trains the MNIST classifier).

Every file goes under --out-dir, the caches too (classifiers, decoded JPEGs, FID statistics): the stages run there.
"""
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import dcgan_speed  # noqa: E402  (bench/, beside this file)
import fid as fid_command  # noqa: E402  (bench/fid.py)
from common import classifier, cli, data, devices, fid, files, progress  # noqa: E402

SETTINGS = {
    "data_dir": (None, "folder with MNIST/raw/ and cifar10-jpeg/ (or cifar-10-batches-py/)"),
    "inception_weights": fid.SETTINGS["inception_weights"],
    "out_dir": ("outputs/gpu_bench", "where every run, cache and figure goes (the stages run in this folder)"),
    "out": (None, "the JSON of every number (default: OUT_DIR/results.json)"),
    "device": ("cuda", "cuda, or cpu for --smoke", ("cuda", "cpu")),
    "dcgan_epochs": (30, "epochs of dcgan_cifar10.py (its default is 10)", "[1, inf)"),
    "budget": (520.0, "seconds for all stages together; a stage gets what is left, at most its own limit", "(0, inf)"),
    "smoke": (False, "tiny settings (64 to 512 training images, 1 epoch, 16-image FIDs, small classifiers) to "
                     "check the whole bench end to end on a CPU; its numbers mean nothing"),
}

# Seconds each stage may take at most (on one H200 each should need well under its limit).
LIMITS = {"dcgan_train": 240, "dcgan_fid": 180, "plain_dcgan": 300, "fids": 150, "vae_mnist": 90, "gan_mnist": 120}
PUBLISHED = {
    "real": "about 3.1 (NVlabs/stylegan2-ada issue 53, same network)",
    "50k_train": "StudioGAN DCGAN 48.3, SN-DCGAN 29.3; StyleGAN2-ADA about 2.4",
    "10k_test": "StudioGAN DCGAN 50.3 (its earlier protocol)",
}
SMOKE_FID_IMAGES = 16


class Stages:
    """Runs the stages under one deadline, prints each one's status and seconds as it ends, and rewrites the JSON
    after each: a bench stopped from outside keeps the numbers of the stages it finished."""

    def __init__(self, budget, out_dir, limits, results_path, header):
        self.deadline = time.perf_counter() + budget
        self.out_dir, self.limits, self.results_path, self.header = out_dir, limits, results_path, header
        self.results = {}

    def limit(self, name):
        return min(self.limits[name], self.deadline - time.perf_counter())

    def finish(self, name, start, status, **numbers):
        seconds = time.perf_counter() - start
        self.results[name] = {"status": status, "seconds": round(seconds, 1), **numbers}
        print(f"[{name}] {status} in {seconds:.0f} s", flush=True)
        files.write_json(self.results_path, {**self.header, "stages": self.results})

    def script(self, name, script, flags):
        """Run one of the training scripts in out_dir (its output in NAME.log there); returns its metrics.json,
        or None when it failed or ran out of time."""
        start, limit = time.perf_counter(), self.limit(name)
        if limit < 10:
            self.finish(name, start, "skipped: the budget is spent")
            return None
        log = self.out_dir / f"{name}.log"
        with open(log, "w") as output:
            try:
                completed = subprocess.run([sys.executable, str(REPO / script), *flags], cwd=self.out_dir,
                                           stdout=output, stderr=subprocess.STDOUT, timeout=limit)
                status = "ok" if completed.returncode == 0 else f"failed (exit code {completed.returncode})"
            except subprocess.TimeoutExpired:
                status = f"stopped at its limit of {limit:.0f} s"
        metrics_path = self.out_dir / Path(script).stem / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if status == "ok" else None
        if metrics is None:
            print(log.read_text()[-3000:], flush=True)
        self.finish(name, start, status, metrics=metrics)
        return metrics

    def in_process(self, name, work):
        """Run ``work(seconds)`` here: it returns a dict of numbers and starts nothing past the seconds it is given
        (it cannot be stopped from outside as a script can); an exception is reported."""
        start = time.perf_counter()
        if self.limit(name) < 10:
            self.finish(name, start, "skipped: the budget is spent")
            return None
        try:
            numbers = work(self.limit(name))
        except Exception as error:  # one stage's failure (out of memory, say) must not cost the others' numbers
            self.finish(name, start, f"failed ({error.__class__.__name__}: {error})")
            return None
        self.finish(name, start, "ok", **numbers)
        return numbers


def train_plain_dcgan(images, seconds, device, seed):
    """The plain DCGAN's step (bench/dcgan_speed.py) repeated for ``seconds`` of wall time; returns (generator,
    steps). The clock is read every 10 steps, so the GPU is not synchronised at every step."""
    torch.manual_seed(seed)
    step, generator = dcgan_speed.plain_step_function(4, images, 128, device)
    timer, steps = progress.Timer(device), 0
    while steps % 10 or timer.elapsed() < seconds:
        step()
        steps += 1
    return generator, steps


@torch.no_grad()
def plain_samples(generator, count, device):
    """uint8 samples as pytorch/examples draws them: the generator left in training mode, so each batch of 128 is
    normalised by its own statistics."""
    batches = [generator(torch.randn(min(128, count - start), 100, 1, 1, device=device))
               for start in range(0, count, 128)]
    return data.to_uint8(torch.cat(batches), -1, 1)


def fid_between(images, reference, cfg, limit=0):
    flags = ["--images", str(images), "--reference", reference, "--device", cfg.device, "--data-dir", cfg.data_dir]
    if cfg.inception_weights:
        flags += ["--inception-weights", cfg.inception_weights]
    if cfg.smoke or limit:
        flags += ["--limit", str(SMOKE_FID_IMAGES if cfg.smoke else limit)]
    return fid_command.main(flags)


def small_classifiers(cfg, device):
    """--smoke: classifiers trained on 1500 images (seconds on a CPU) where the scripts would train theirs on all."""
    mnist, cifar10 = Path("outputs/classifiers/mnist.pt"), Path("outputs/classifiers/cifar10.pt")
    classifier.mnist_classifier(cfg.data_dir, device, mnist, limit=1500)
    classifier.cifar10_classifier(cfg.data_dir, device, cifar10, limit=1500)


def print_table(results):
    fids = results.get("fids", {})
    dcgan = results.get("dcgan_fid", {}).get("metrics") or {}
    plain = results.get("plain_dcgan", {})
    ours = f"dcgan_cifar10.py, {dcgan.get('epochs', '?')} epochs, best.pt (epoch {dcgan.get('sampled_epoch', '?')})"
    baseline = f"plain DCGAN, {plain.get('steps', '?')} steps ({plain.get('epochs', '?')} epochs)"
    script_fid = {"fid_inception": dcgan.get("fid_inception"), "images": dcgan.get("fid_generated_images"),
                  "reference_images": dcgan.get("fid_real_images")}
    rows = [("CIFAR-10 test images (real data)", "train", fids.get("real"), PUBLISHED["real"]),
            (ours, "train", script_fid, PUBLISHED["50k_train"]),
            (baseline, "train", fids.get("plain_50k_train"), ""),
            (ours, "test", fids.get("dcgan_10k_test"), PUBLISHED["10k_test"]),
            (baseline, "test", fids.get("plain_10k_test"), "")]
    print("\n| images | protocol | FID | published |\n| --- | --- | --- | --- |")
    for name, split, result, published in rows:
        if result and result["fid_inception"] is not None:
            protocol = f"{result['images']} vs {result['reference_images']} {split}"
            print(f"| {name} | {protocol} | {result['fid_inception']:.2f} | {published} |")
        else:
            print(f"| {name} | vs {split} | not computed | {published} |")
    print("\n| stage | status | seconds |\n| --- | --- | --- |")
    for name, stage in results.items():
        print(f"| {name} | {stage['status']} | {stage['seconds']} |")


def main(argv=None):
    cfg = cli.parse(SETTINGS, __doc__, argv)
    if not cfg.data_dir:
        raise cli.UserError("pass --data-dir DIR, the folder holding MNIST/raw/ and cifar10-jpeg/")
    # Paths are resolved before the stages move into --out-dir.
    cfg.data_dir = str(Path(cfg.data_dir).resolve())
    if cfg.inception_weights:
        cfg.inception_weights = str(Path(cfg.inception_weights).resolve())
    out_dir = Path(cfg.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = Path(cfg.out).resolve() if cfg.out else out_dir / "results.json"
    device = devices.pick_device(cfg.device)
    fid.load_network(cfg.inception_weights, device)  # a missing file stops the bench now, not after the training
    # Every relative path the scripts and common/ write to (outputs/, data/cache/, the FID cache) lands in out_dir.
    os.chdir(out_dir)
    machine = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.machine()}, {os.cpu_count()} CPUs"
    header = {"machine": machine, "torch": torch.__version__, "python": platform.python_version(),
              "settings": vars(cfg), "published": PUBLISHED}
    # --smoke on a CPU: the limits sized for a GPU would stop its stages; the budget alone bounds them.
    stages = Stages(cfg.budget, out_dir, dict.fromkeys(LIMITS, cfg.budget) if cfg.smoke else LIMITS, results_path,
                    header)

    common = ["--data-dir", cfg.data_dir, "--device", cfg.device]
    weights = ["--inception-weights", cfg.inception_weights] if cfg.inception_weights else []
    samples, epochs, tiny = 50000, str(cfg.dcgan_epochs), {"dcgan": [], "gan": [], "vae": []}
    if cfg.smoke:
        small_classifiers(cfg, device)
        samples, epochs = SMOKE_FID_IMAGES, "1"
        tiny = {"dcgan": ["--limit", "64", "--quality-samples", "64", "--eval-images", "256"],
                "gan": ["--limit", "512", "--epochs", "1", "--quality-samples", "256", "--eval-images", "256"],
                "vae": ["--limit", "512", "--epochs", "1", "--iw-samples", "2"]}
    dcgan_flags = common + ["--out-dir", "dcgan_cifar10"] + (tiny["dcgan"] or ["--batch-size", "128",
                                                                                 "--base-channels", "64"])

    stages.script("dcgan_train", "dcgan_cifar10.py", dcgan_flags + ["--epochs", epochs])
    # From the checkpoints: a training stage stopped at its limit still has its finished epochs and best.pt.
    # CIFAR-10's other protocol: 50,000 samples against the 50,000 training images (--smoke: the script's floor).
    fid_flags = ["--fid", "inception", "--fid-samples", str(max(samples, 2049)), "--fid-reference", "train"]
    sampled = stages.script("dcgan_fid", "dcgan_cifar10.py", dcgan_flags + [
        "--epochs", "0", "--num-samples", str(samples), *fid_flags, *weights])
    seconds = sampled["train_seconds"] if sampled else 60.0

    def plain_dcgan(limit):
        images, _ = data.load_cifar10(cfg.data_dir, train=True, device=device, limit=512 if cfg.smoke else 0)
        generator, steps = train_plain_dcgan(images, min(seconds, limit - 30), device, seed=0)
        files.write_samples(Path("plain_dcgan/samples.npz"), [plain_samples(generator, samples, device)], samples)
        return {"steps": steps, "epochs": round(steps * 128 / len(images), 1), "train_seconds": seconds}
    stages.in_process("plain_dcgan", plain_dcgan)

    def fids(limit):
        numbers, end = {}, time.perf_counter() + limit
        for name, images, reference, count in [("real", "cifar10-test", "cifar10-train", 0),
                                               ("plain_50k_train", "plain_dcgan/samples.npz", "cifar10-train", 0),
                                               ("dcgan_10k_test", "dcgan_cifar10/samples.npz", "cifar10-test", 10000),
                                               ("plain_10k_test", "plain_dcgan/samples.npz", "cifar10-test", 10000)]:
            if images.endswith(".npz") and not Path(images).is_file():
                continue  # the stage that writes it failed
            if time.perf_counter() > end:
                break
            numbers[name] = fid_between(images, reference, cfg, count)
        return numbers
    stages.in_process("fids", fids)

    stages.script("vae_mnist", "vae_mnist.py", common + ["--out-dir", "vae_mnist"] + tiny["vae"])
    stages.script("gan_mnist", "gan_mnist.py", common + ["--out-dir", "gan_mnist"] + tiny["gan"])

    print_table(stages.results)
    print(f"wrote {results_path}")
    return {**header, "stages": stages.results}


if __name__ == "__main__":
    cli.run(main)
