"""What a dataset's labels mean: label indices, evaluation regions and class descriptions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetSpec:
    """Describes a dataset's label space.

    label_names: index -> name of the label map's values (0 is background). The engine trains a
        softmax over these indices.
    regions: evaluation class name -> the label indices it covers. Overlapping structures are
        expressed here: the fundus optic disc is rim ∪ cup, so `disc: (1, 2)`, `cup: (2,)`.
    descriptions: region name -> a sentence of anatomy and appearance (used as text prompts).
    """

    name: str
    label_names: tuple[str, ...]
    regions: dict[str, tuple[int, ...]]
    channels: int
    volumetric: bool = False
    descriptions: dict[str, str] = field(default_factory=dict)
    # label-map values used when writing predictions (index -> pixel value); identity by default
    output_values: tuple[int, ...] | None = None
    # region names this dataset annotates (None = all of `regions`). A partly annotated dataset
    # (Sunnybrook: LV and MYO, no RV) keeps the model's full label space; the regions it does not
    # annotate are "not annotated": skipped by metrics, tables and post-processing decisions, never
    # scored as 0 or as perfect. A case may annotate fewer still (`Sample.annotated`).
    annotated: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def region_names(self) -> list[str]:
        return list(self.regions)

    @property
    def annotated_regions(self) -> tuple[str, ...]:
        """The regions this dataset annotates (all of them unless `annotated` says fewer)."""
        return tuple(self.regions) if self.annotated is None else self.annotated


FUNDUS = DatasetSpec(
    name="fundus",
    label_names=("background", "rim", "cup"),
    regions={"disc": (1, 2), "cup": (2,)},
    channels=3,
    descriptions={
        "disc": "the optic disc, a bright round yellow-orange region where the optic nerve and "
        "retinal vessels leave the eye",
        "cup": "the optic cup, the pale, bright central depression of the optic disc",
    },
)

CARDIAC = DatasetSpec(
    name="mms",
    label_names=("background", "lv", "myo", "rv"),
    regions={"lv": (1,), "myo": (2,), "rv": (3,)},
    channels=1,
    volumetric=True,
    descriptions={
        "lv": "the left ventricular blood pool, a bright round cavity in the centre of the heart",
        "myo": "the left ventricular myocardium, a dark ring of heart muscle around the left ventricle",
        "rv": "the right ventricle, a bright crescent-shaped cavity wrapped around the septum",
    },
)
