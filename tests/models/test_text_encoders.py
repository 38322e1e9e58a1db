import torch

from vlsa.data.spec import FUNDUS
from vlsa.models.text import encoders
from vlsa.models.text.prompts import class_prompts


def test_a_corrupt_disk_cache_is_a_miss_not_an_error():
    prompts = class_prompts(FUNDUS)
    emb = encoders.class_embeddings("minilm", prompts)
    files = (encoders._cache_file("x").parent).glob("*.pt")
    (cached,) = [f for f in files if torch.load(f, weights_only=True).shape == emb.shape
                 and torch.equal(torch.load(f, weights_only=True), emb)]
    for damage in (cached.read_bytes()[:50], b"not a torch file", None):
        if damage is None:
            torch.save(torch.zeros(7, 3), cached)  # readable but the wrong shape
        else:
            cached.write_bytes(damage)  # truncated / garbage (was an UnpicklingError traceback)
        encoders._MEMORY.clear()
        calls = encoders.CALLS["encode"]
        again = encoders.class_embeddings("minilm", prompts)
        assert encoders.CALLS["encode"] == calls + 1  # recomputed ...
        assert torch.allclose(again, emb, atol=1e-6)
        assert torch.allclose(torch.load(cached, weights_only=True), emb, atol=1e-6)  # ... and rewritten
