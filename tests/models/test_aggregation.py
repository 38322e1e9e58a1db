import torch
import torch.nn.functional as F

from vlsa.models.aggregation import EMAggregation


def test_responsibilities_sum_to_one_and_centres_stay_unit_norm():
    em = EMAggregation(16, k=8, iters=3)
    feats = torch.randn(2, 16, 5, 7)
    out, z = em(feats)
    assert out.shape == feats.shape and z.shape == (2, 35, 8)
    assert torch.allclose(z.sum(-1), torch.ones(2, 35), atol=1e-5)
    mu, _ = em.cluster(em.conv_in(feats).flatten(2))
    assert torch.allclose(mu.norm(dim=1), torch.ones(2, 8), atol=1e-5)
    assert torch.allclose(em.bases.norm(dim=1), torch.ones(1, 8), atol=1e-5)


def test_em_recovers_well_separated_cluster_means():
    torch.manual_seed(0)
    c, k = 8, 3
    true = F.normalize(torch.eye(c)[:k] * 3 + 0.1, dim=1)  # K x C, well separated directions
    labels = torch.arange(300) % k
    x = true[labels] + 0.05 * torch.randn(300, c)  # N x C
    em = EMAggregation(c, k=k, iters=10, lam=20.0)
    # start near (not at) the truth, as the running bases would after some training
    em.bases.copy_(F.normalize(true.t() + 0.3 * torch.randn(c, k), dim=0).unsqueeze(0))
    mu, _ = em.cluster(x.t().unsqueeze(0))
    expected = F.normalize(torch.stack([x[labels == i].mean(0) for i in range(k)]), dim=1)
    cos = (mu[0].t() * expected).sum(-1)
    assert torch.all(cos > 0.999), cos


def test_text_anchors_seed_the_first_centres():
    em = EMAggregation(4, k=6, iters=1, lam=50.0)
    anchors = F.normalize(torch.eye(4)[:2], dim=1).t().unsqueeze(0)  # 1 x C x 2
    x = torch.cat([torch.eye(4)[0].repeat(10, 1), torch.eye(4)[1].repeat(10, 1)]).t().unsqueeze(0)
    mu, _ = em.cluster(x, anchors)
    assert torch.allclose(mu[0, :, 0], torch.eye(4)[0], atol=1e-3)
    assert torch.allclose(mu[0, :, 1], torch.eye(4)[1], atol=1e-3)


def test_running_bases_change_only_in_training():
    em = EMAggregation(8, k=4)
    feats = torch.randn(2, 8, 4, 4)
    before = em.bases.clone()
    em.eval()
    em(feats)
    assert torch.equal(em.bases, before)
    em.train()
    em(feats)
    assert not torch.equal(em.bases, before)
    assert "bases" in em.state_dict()


def test_gradient_reaches_features_but_not_through_the_iterations():
    torch.manual_seed(0)
    em = EMAggregation(8, k=4, iters=3).eval()
    feats = torch.randn(1, 8, 3, 3, requires_grad=True)
    out, _ = em(feats)
    (grad,) = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), feats)
    assert grad.abs().sum() > 0
    x = em.conv_in(feats).flatten(2)
    mu, _ = em.cluster(x)
    assert not mu.requires_grad  # the T iterations carry no gradient

    def head(centres):  # the final E-step and re-expression, with the centres given
        z = em.e_step(torch.nn.functional.normalize(x, dim=1), centres)
        recon = torch.einsum("bck,bnk->bcn", centres, z).reshape(1, 8, 3, 3)
        out = em.act(feats + em.conv_out(em.act(recon)))
        return (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()

    # the gradient is that of the last E-step with the centres held constant ...
    (constant,) = torch.autograd.grad(head(mu), feats, retain_graph=True)
    assert torch.allclose(grad, constant, atol=1e-6)
    # ... and differs from a gradient through the iterations (so the assertion above can fail)
    through = em.bases.clone()
    x_hat = torch.nn.functional.normalize(x, dim=1)
    for _ in range(em.iters):
        through = em.m_step(x, em.e_step(x_hat, through))
    (unrolled,) = torch.autograd.grad(head(through), feats)
    assert not torch.allclose(unrolled, constant, atol=1e-4)
    assert not em.bases.requires_grad


def test_text_anchored_centres_are_named_by_the_classes():
    # docs/method.md: "C clusters are seeded by, and named by, the classes": after the iterations, centre c
    # (anchored at class c's embedding) sits on the pixels of class c, whatever order the classes
    # come in and however the other (running) centres start
    torch.manual_seed(0)
    c, classes = 8, 3
    means = F.normalize(torch.randn(classes, c), dim=1)
    labels = torch.arange(240) % classes
    x = (means[labels] + 0.1 * torch.randn(240, c)).t().unsqueeze(0)  # 1 x C x N
    em = EMAggregation(c, k=6, iters=5, lam=10.0)
    for order in ([0, 1, 2], [2, 0, 1]):
        anchors = F.normalize(means[order] + 0.3 * torch.randn(classes, c), dim=1)  # noisy text embeddings
        mu, x_hat = em.cluster(x, anchors.t().unsqueeze(0))
        z = em.e_step(x_hat, mu)[0]  # N x K
        for slot, cls in enumerate(order):
            centre = mu[0, :, slot]
            assert (centre @ means[cls]) > 0.95  # the centre is the class's mean direction
            # among the anchored centres, the pixels of that class respond to it (free centres may
            # settle on the same cluster and share its responsibility: docs/method.md says so)
            assert z[labels == cls][:, :classes].argmax(1).eq(slot).float().mean() > 0.95
