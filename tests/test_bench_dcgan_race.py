"""bench/dcgan_race.py's pieces that decide what it reports: the variants it is asked to race and its verdict."""
import sys

import pytest

from common import cli
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


def test_ahead_means_the_worst_seed_beats_the_best_baseline_seed_at_every_point(capsys):
    def run(*distances):
        return [{"frechet_distance": d, "steps": 10 * (i + 1)} for i, d in enumerate(distances)]
    results = {"plain": [run(300, 200), run(320, 150)],
               "default": [run(250, 160), run(260, 140)],   # its worst at 4 minutes (160) is not below plain's 150
               "wide": [run(100, 90), run(110, 95)]}
    table = dcgan_race.summarise(results, list(results), every=2.0)
    assert table["default"][1][1:4] == (150.0, 140.0, 160.0)
    dcgan_race.print_table(table, list(results), "test images")
    printed = capsys.readouterr().out
    assert "default: ahead of plain beyond the seed spread at 1 of 2 points (not at minutes 4)" in printed
    assert "wide: ahead of plain beyond the seed spread at 2 of 2 points" in printed
