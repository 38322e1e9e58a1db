"""Class descriptions and prompt templates.

Prompts are written per *label index* (what the softmax predicts), not per evaluation region:
the fundus model classifies background, disc rim and cup. Each class is a name plus a sentence
of anatomy and appearance; each description is put into a few templates and the embeddings are
averaged over templates.
"""

from __future__ import annotations

from vlsa.data.spec import DatasetSpec

MODALITY = {"fundus": "retinal fundus photograph", "mms": "cardiac cine MRI short-axis slice", "folder": "medical image"}

LABEL_DESCRIPTIONS = {
    "fundus": {
        "background": "the retina around the optic disc, orange-red tissue crossed by dark blood vessels",
        "rim": "the neuroretinal rim, the orange-pink ring of nerve tissue between the optic disc margin and the cup",
        "cup": "the optic cup, the pale, bright central depression of the optic disc",
    },
    "mms": {
        "background": "the tissues around the heart: lungs, liver, chest wall and fat",
        "lv": "the left ventricular blood pool, a bright round cavity in the centre of the heart",
        "myo": "the left ventricular myocardium, a dark ring of heart muscle around the left ventricle",
        "rv": "the right ventricle, a bright crescent-shaped cavity wrapped around the septum",
    },
}

TEMPLATES = (
    "{description}.",
    "a {modality} showing {name}: {description}.",
    "the {name} in a {modality}.",
    "a segmentation of {description}.",
)


def class_prompts(spec: DatasetSpec) -> list[list[str]]:
    """One list of prompts per label index."""
    modality = MODALITY.get(spec.name, "medical image")
    table = LABEL_DESCRIPTIONS.get(spec.name, {})
    prompts = []
    for name in spec.label_names:
        description = table.get(name) or spec.descriptions.get(name) or (
            "the background of the image" if name == "background" else name)
        readable = {"lv": "left ventricle", "myo": "myocardium", "rv": "right ventricle", "rim": "neuroretinal rim"}.get(name, name)
        prompts.append([t.format(description=description, name=readable, modality=modality) for t in TEMPLATES])
    return prompts
