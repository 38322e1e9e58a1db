"""DSU (feature-statistics uncertainty, Li et al., ICLR 2022): the re-normalisation, where it acts
(training only, the decoder's pyramid), its reproducibility, and the config switch."""

import pytest
import torch

from vlsa.config import build_config
from vlsa.errors import ConfigError
from vlsa.models.feature_statistics import perturb_pyramid, resample_statistics


def test_resampled_map_has_the_drawn_statistics_and_unchosen_images_are_untouched():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8) * torch.tensor([1.0, 2.0, 3.0])[None, :, None, None] + 5
    chosen = torch.tensor([True, False, True, False])
    eps_mu, eps_sigma = torch.randn(4, 3), torch.randn(4, 3)
    out = resample_statistics(x, chosen, eps_mu, eps_sigma)
    mu, sigma = x.mean((2, 3)), (x.var((2, 3)) + 1e-6).sqrt()
    want_mu = mu + eps_mu * (mu.var(0) + 1e-6).sqrt()
    want_sigma = sigma + eps_sigma * (sigma.var(0) + 1e-6).sqrt()
    got_mu, got_sigma = out.mean((2, 3)), out.var((2, 3)).sqrt()
    assert torch.allclose(got_mu[chosen], want_mu[chosen], atol=1e-4)
    assert torch.allclose(got_sigma[chosen], want_sigma[chosen].abs(), atol=1e-3)
    assert torch.equal(out[~chosen], x[~chosen])
    # the spatial pattern of a chosen map is kept: the same map up to an affine change per channel
    corr = torch.corrcoef(torch.stack([out[0, 0].flatten(), x[0, 0].flatten()]))[0, 1]
    assert corr.abs() > 0.999


def test_perturb_pyramid_is_reproducible_from_the_generator_and_off_at_p0():
    pyramid = [torch.randn(6, 4, 8, 8), torch.randn(6, 8, 4, 4)]
    first = perturb_pyramid(pyramid, 0.5, torch.Generator().manual_seed(0))
    again = perturb_pyramid(pyramid, 0.5, torch.Generator().manual_seed(0))
    other = perturb_pyramid(pyramid, 0.5, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(not torch.equal(a, b) for a, b in zip(first, other))
    # the same images are perturbed on every level
    changed = [{i for i in range(6) if not torch.equal(p[i], q[i])} for p, q in zip(first, pyramid)]
    assert changed[0] == changed[1] and 0 < len(changed[0]) < 6
    assert perturb_pyramid(pyramid, 0.0, torch.Generator()) is pyramid
    assert perturb_pyramid([t[:1] for t in pyramid], 1.0, torch.Generator())[0].equal(pyramid[0][:1])


def _vlsa(dsu: float):
    from vlsa.data.spec import FUNDUS
    from vlsa.models.vlsa import VLSA

    cfg = build_config({}, [f"model.dsu={dsu}", "model.text.encoder=none"])
    torch.manual_seed(0)
    return VLSA(cfg.model, FUNDUS, 32)


def test_vlsa_applies_dsu_only_in_training_with_a_generator():
    model = _vlsa(1.0)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    plain = model(x)
    perturbed = model(x, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(plain, perturbed)
    perturbed.sum().backward()  # differentiable: the backbone learns through it
    assert model.backbone.parameters().__next__().grad is not None
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x, generator=torch.Generator().manual_seed(0)))


def test_dsu_config_is_digest_neutral_off_and_unread_by_the_unet_rows():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import dg_table

    assert build_config({}, []).digest() == build_config({}, ["model.dsu=0"]).digest()
    assert build_config({}, []).digest() != build_config({}, ["model.dsu=0.5"]).digest()
    unet = ["model.name=unet"]
    # a U-Net row trained from a config with DSU on is the same unit as one without (it never reads it)
    assert dg_table.unit_digest(build_config({}, unet)) == dg_table.unit_digest(build_config({}, [*unet, "model.dsu=0.5"]))
    assert dg_table.unit_digest(build_config({}, [])) != dg_table.unit_digest(build_config({}, ["model.dsu=0.5"]))
    with pytest.raises(ConfigError, match="dsu"):
        build_config({}, ["model.dsu=1.5"])


def test_the_dsu_rows_switch_it_on_and_the_packaged_fundus_config_keeps_it_off():
    import sys
    from pathlib import Path

    from vlsa.config import load_config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import dg_real

    assert load_config("drishti_sdg", ["data.root=/x"]).model.dsu == 0  # DSU failed rule 2 on fundus-scale (select_real.PACKAGING)
    for setting in ("fundus", "fundus-scale"):
        assert dg_real.unit_config(setting, "VLSA", 0).model.dsu == 0
        assert dg_real.unit_config(setting, "VLSA (DSU)", 0).model.dsu == 0.5
        assert dg_real.row_kind("VLSA (DSU)") == "variant"
