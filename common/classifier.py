"""The small classifiers the project trains once and caches, and the sample-quality numbers they give.

A GAN has no likelihood to report, so its samples are judged through a classifier's eyes (common/metrics.py). Each
dataset's classifier is trained once, cached under outputs/classifiers/ and reused, so the numbers of two runs compare.
"""
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common import checkpoints, cli, data, files, metrics, progress, seeds
from common.cli import UserError

FEATURES = 128  # the width of the classifiers' hidden layer: the features a Frechet distance compares
# The fewest images on each side of a Frechet distance: with N images the covariance of FEATURES features has rank at
# most N - 1, singular below FEATURES + 1, and the distance then says more about N than about the images.
MIN_IMAGES = FEATURES + 1

MNIST_CACHE = "outputs/classifiers/mnist.pt"

MNIST_SETTINGS = {
    "classifier": (MNIST_CACHE, "cached MNIST classifier for the quality numbers; trained there first if absent "
                                "(BENCHMARKS.md: its time)"),
}


class SmallCNN(nn.Module):
    """Images in [0, 1] -> two convolution + max-pool blocks and one hidden layer (``body``: the features a Frechet
    distance compares) -> class logits (``head``)."""

    def __init__(self, in_channels=1, image_size=28, channels=32, hidden=FEATURES, num_classes=10):
        super().__init__()
        self.config = dict(in_channels=in_channels, image_size=image_size, channels=channels, hidden=hidden,
                           num_classes=num_classes)
        c, quarter = channels, image_size // 4
        self.body = nn.Sequential(                                              # in_channels x s x s
            nn.Conv2d(in_channels, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),  # c x s/2 x s/2
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(), nn.MaxPool2d(2),    # 2c x s/4 x s/4
            nn.Flatten(),
            nn.Linear(2 * c * quarter * quarter, hidden), nn.ReLU(),              # hidden: the features
        )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


@torch.no_grad()
def accuracy(model, images, labels, batch_size=1000):
    """Fraction of uint8 ``images`` whose most probable class is their label."""
    model.eval()
    correct = sum(int((model(data.to_unit_range(x)).argmax(1) == y).sum())
                  for x, y in zip(images.split(batch_size), labels.split(batch_size)))
    return correct / len(images)


def load_or_train(model, load_data, path, epochs=3, batch_size=128, lr=2e-3, seed=0):
    """(``model`` with the weights cached at ``path``, trained there first if absent on what ``load_data()`` returns,
    (train, test) pairs of images and labels; its identity). A file at ``path`` that is not a classifier of this config
    is refused, never retrained over: it may be the user's."""
    path = Path(path)
    device = next(model.parameters()).device
    if path.exists():
        cached = checkpoints.load_checkpoint(path, device, kind="classifier", flag="--classifier")
        if cached["model_config"] != model.config or cached["model"].keys() != model.state_dict().keys():
            raise UserError(f"{path} holds a classifier of another shape ({cached['model_config']}) than this "
                            f"script's ({model.config}): pass another --classifier path; a missing file is "
                            f"trained and written there")
        model.load_state_dict(cached["model"])
        print(f"classifier {path}: {describe(cached['identity'])}")
        return model.eval(), cached["identity"]

    files.check_writable_file(path, "--classifier")
    train, test = load_data()
    with cli.step_without_saving(f"training the classifier for {path}, which is written only once trained"):
        print(f"no classifier at {path}: training one on {len(train[0])} images ({epochs} epochs)")
        identity = _train(model, train, test, path, epochs, batch_size, lr, seed)
    print(f"classifier cached at {path}: {describe(identity)}")
    return model.eval(), identity


def weights_hash(model):
    """SHA-256 over the model's weights, 16 hex digits: two classifiers with the same hash judge alike."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def describe(identity):
    return (f"weights {identity['weights_sha256']}, seed {identity['seed']}, test accuracy "
            f"{identity['test_accuracy']:.4f} on {identity['test_images']} images, trained on "
            f"{identity['train_images']}")


def _train(model, train, test, path, epochs, batch_size, lr, seed):
    """Train ``model`` and write it to ``path``; returns its identity. Adam with a linear decay to 0 over ``epochs``;
    deterministic algorithms while it trains, so that one seed on one machine trains the same weights."""
    device = next(model.parameters()).device
    seeds.seed_everything(seed)
    for module in model.modules():  # the initial weights are the seed's too, whatever was drawn before
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    images, labels = train
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(images) // batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / (epochs * steps_per_epoch))
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            order = seeds.seed_epoch(seed, epoch)
            for index in progress.progress(seeds.shuffled_batches(len(images), batch_size, order, device), epoch,
                                           epochs):
                loss = F.cross_entropy(model(data.to_unit_range(images[index])), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
    finally:
        torch.use_deterministic_algorithms(deterministic)
    identity = {"weights_sha256": weights_hash(model), "seed": seed, "test_accuracy": accuracy(model, *test),
                "test_images": len(test[0]), "train_images": len(images), "epochs": epochs}
    checkpoints.save_checkpoint(path, "classifier", model=model.state_dict(), model_config=model.config,
                                identity=identity)
    return identity


def mnist_classifier(data_dir, device, path=MNIST_CACHE, limit=0):
    """The cached MNIST classifier and its identity (kept in metrics.json), trained first if ``path`` is absent; with
    ``limit``, a quick one, trained on the first ``limit`` training images and tested on as many test images."""
    model = SmallCNN(in_channels=1, image_size=28).to(device)
    return load_or_train(model, lambda: (data.load_mnist(data_dir, train=True, device=device, limit=limit),
                                         data.load_mnist(data_dir, train=False, device=device, limit=limit)), path)


@torch.no_grad()
def features_and_probabilities(model, images, batch_size=1000):
    """Penultimate features (N x hidden) and class probabilities (N x K) of uint8 images, on the CPU; images of
    another size than the model's (64 x 64 DCGAN samples) are resized to it first."""
    model.eval()
    features, probabilities = [], []
    for batch in images.split(batch_size):
        batch = data.resize_and_crop(batch, model.config["image_size"])
        hidden = model.body(data.to_unit_range(batch))
        features.append(hidden.cpu())
        probabilities.append(F.softmax(model.head(hidden), dim=1).cpu())
    return torch.cat(features), torch.cat(probabilities)


def sample_quality(model, generated, real_features):
    """The quality numbers of uint8 ``generated`` images against the features of real ones: the Frechet distance, the
    inception score, each predicted class's share and the rarest one's (1/K when balanced, 0 under mode collapse)."""
    features, probabilities = features_and_probabilities(model, generated)
    shares = metrics.class_shares(probabilities)
    return {
        "frechet_distance": metrics.frechet_distance(features, real_features),
        "inception_score": metrics.inception_score(probabilities),
        "class_shares": shares,
        "min_class_share": min(shares),
    }


CIFAR10_CACHE = "outputs/classifiers/cifar10.pt"

CIFAR10_SETTINGS = {
    "classifier": (CIFAR10_CACHE, "cached CIFAR-10 classifier for the quality numbers; trained there first if absent "
                                  "(BENCHMARKS.md: its time, decoding the JPEGs included)"),
}


def cifar10_classifier(data_dir, device, path=CIFAR10_CACHE, limit=0):
    """The cached CIFAR-10 classifier and its identity; ``limit`` as for mnist_classifier. Its features need only be
    the same in every run: a stronger classifier would cost far more time for a few points of accuracy."""
    model = SmallCNN(in_channels=3, image_size=32, channels=32, hidden=FEATURES).to(device)
    return load_or_train(model, lambda: (data.load_cifar10(data_dir, train=True, device=device, limit=limit),
                                         data.load_cifar10(data_dir, train=False, device=device, limit=limit)), path)
