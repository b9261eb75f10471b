"""The held-out selection protocol: which configuration would be chosen without seeing the
scene it is scored on.

For every held-out unit (one scene: leave-one-scene-out; one dataset, the scenes of one
top-level folder: leave-one-dataset-out), the candidate with the best mean AUC on the *other*
scenes is chosen and scores the held-out scene(s). Scenes of one image (band sets or scalings
of it on one grid, in one dataset or two: ``scenes.same_images``) are held out together, and
so are the datasets that share one: choosing on an image's twin is choosing on the image. The
held-out mean is the mean over scenes of those scores; the in-sample mean is that of the
candidate chosen on every scene. A scene's AUC is the mean over its seeds; the spread is the
std over seeds of the per-seed held-out mean.

The ablation sets the best of the methods without a GAN (chosen the same way) beside the
selected one: the GAN must carry the gain. The default is chosen by AUC; the ablation is also
run on logAUC and Pd (``OTHER_METRICS``), each side choosing by that metric with the same
protocols: they weigh the low false-alarm rates an analyst works at, where a whole-curve AUC
near 1 hides most of the difference.
"""

from dataclasses import dataclass, field

from ..errors import HsanomalyError
from ..spelling import spell
from .tables import mean, signed, std

PROTOCOLS = ("leave-one-scene-out", "leave-one-dataset-out")
UNITED = " + "              # joins the names of a held-out unit's members
OTHER_METRICS = {"logAUC": "log_auc", "Pd": "pd"}   # the ablation's columns beside the AUC


def _metric_table(runs, methods, key="auc"):
    """{method: {scene: {seed: runs' key}}} for ``methods``; None where a run lacks ``key``."""
    table = {m: {} for m in methods}
    for r in runs:
        if r["method"] in table:
            table[r["method"]].setdefault(r["scene"], {})[r["seed"]] = r.get(key)
    return table


def _scene_value(table, method, scene):
    return mean(list(table[method][scene].values()))


def _mean(table, method, scenes):
    return mean([_scene_value(table, method, s) for s in scenes])


def _best(table, candidates, scenes):
    """The candidate with the best mean of ``table``'s metric over ``scenes`` (ties: the first
    listed)."""
    return max(candidates, key=lambda m: _mean(table, m, scenes))


@dataclass
class Protocol:
    name: str
    chosen: dict              # held-out unit -> candidate chosen on the other scenes
    held_out: dict            # scene -> the metric (seed mean) of the candidate chosen without it
    per_seed: list            # held-out mean per seed (the spread)
    units: dict = field(default_factory=dict)    # held-out unit -> its scenes

    def pick(self, scene):
        """The candidate chosen without ``scene`` (and without its unit's other scenes)."""
        return next(self.chosen[unit] for unit, members in self.units.items()
                    if scene in members)

    @property
    def possible(self):
        """False where all scenes are one unit (one dataset): nothing is left to choose on."""
        return bool(self.held_out)

    @property
    def mean(self):
        return mean(list(self.held_out.values())) if self.possible else None


def run_protocol(name, table, candidates, units):
    """``units``: {unit: [scenes]}; every scene in exactly one unit. With a single unit no
    scene can be held out (choosing on every scene would be in-sample under the held-out
    name): the protocol is not possible and says so."""
    if len(units) < 2:
        return Protocol(name, {}, {}, [], dict(units))
    scenes = [s for members in units.values() for s in members]
    chosen, held_out, seeded = {}, {}, {}
    for unit, members in units.items():
        pick = _best(table, candidates, [s for s in scenes if s not in members])
        chosen[unit] = pick
        for scene in members:
            held_out[scene] = _scene_value(table, pick, scene)
            for seed, auc in table[pick][scene].items():
                if seed is not None:      # an unseeded pick's one value stands for every seed
                    seeded.setdefault(seed, {})[scene] = auc
    per_seed = [mean([aucs.get(s, held_out[s]) for s in scenes]) for aucs in seeded.values()]
    return Protocol(name, chosen, held_out, per_seed or [mean(list(held_out.values()))],
                    dict(units))


@dataclass
class Ablation:
    """One metric's ablation: the protocols run on ``table`` (that metric) over the GAN
    candidates and over the methods without a GAN, each side choosing by the metric."""
    label: str
    table: dict
    gan: list                 # Protocol per PROTOCOLS
    base: list

    def best(self, methods, scenes):
        """(method, in-sample mean) of the best of ``methods`` on this metric."""
        pick = _best(self.table, methods, scenes)
        return pick, _mean(self.table, pick, scenes)


@dataclass
class Selection:
    candidates: list
    scenes: list
    in_sample: dict           # candidate -> mean AUC over every scene
    selected: str             # the candidate chosen on every scene
    protocols: list           # Protocol per PROTOCOLS, over the candidates
    ablation: list = field(default_factory=list)       # methods without a GAN
    ablations: list = field(default_factory=list)   # Ablation: AUC, then OTHER_METRICS runs have
    twins: list = field(default_factory=list)    # the units of scenes showing one image

    @property
    def ablation_protocols(self):
        """The protocols over the methods without a GAN, by AUC."""
        return self.ablations[0].base if self.ablations else []

    def tables(self):
        """(title, header, rows): the protocols first, then every candidate, then the ablation."""
        out = []
        header = ["protocol", "held-out mean AUC", "std over seeds", "in-sample mean of the "
                  "selected", "chosen per held-out unit"]
        rows = []
        for p in self.protocols:
            picks = {}
            for unit, pick in p.chosen.items():
                picks.setdefault(pick, []).append(" + ".join(   # "": the data folder's own
                    part.split("/")[-1] or "(top level)" for part in unit.split(UNITED)))
            rows.append([p.name, f"{p.mean:.4f}" if p.possible else "n/a",
                         f"{std(p.per_seed):.4f}" if p.possible else "",
                         f"{self.in_sample[self.selected]:.4f} ({self.selected})",
                         "; ".join(f"{k}: {', '.join(v)}" for k, v in picks.items())
                         if p.possible else "not possible: every scene is in one unit (one "
                         "dataset, or one image)"])
        out.append(("Held-out selection (the configuration is chosen without the scene it "
                    "scores)", header, rows))
        scene_out = self.protocols[0]
        rows = []
        for scene in self.scenes if scene_out.possible else []:   # else no table: one image
            row = [scene, scene_out.pick(scene), f"{scene_out.held_out[scene]:.4f}"]
            if self.ablation_protocols:
                base = self.ablation_protocols[0]
                row += [base.pick(scene), f"{base.held_out[scene]:.4f}",
                        signed(scene_out.held_out[scene] - base.held_out[scene])]
            rows.append(row)
        if rows:
            out.append(("Leave-one-scene-out, per scene: the configuration chosen on the other "
                        "scenes and its AUC on this one",
                        ["scene", "chosen", "AUC"] + (["chosen without a GAN", "AUC", "GAN gain"]
                                                      if self.ablation_protocols else []), rows))
        cand = []
        for m in sorted(self.candidates, key=lambda m: -self.in_sample[m]):
            times = [sum(pick == m for pick in p.chosen.values()) for p in self.protocols]
            cand.append([m, f"{self.in_sample[m]:.4f}"] + [f"{t}/{len(p.chosen)}" if p.possible
                                                            else "n/a" for t, p in
                                                            zip(times, self.protocols)])
        out.append(("Every candidate: in-sample mean AUC and how often each protocol chose it",
                    ["candidate", "in-sample mean", *(f"chosen ({p})" for p in PROTOCOLS)], cand))
        if self.ablation:
            def gain(gan, base):
                return [f"{gan:.4f}", f"{base:.4f}", signed(gan - base)]

            rows = [[p.name] + [cell for a in self.ablations
                                for cell in gain(a.gan[i].mean, a.base[i].mean)]
                    for i, p in enumerate(self.protocols) if p.possible]
            in_sample = ["in-sample"]
            for a in self.ablations:
                gan, base = a.best(self.candidates, self.scenes), a.best(self.ablation, self.scenes)
                cells = gain(gan[1], base[1])
                in_sample += [f"{cells[0]} ({gan[0]})", f"{cells[1]} ({base[0]})", cells[2]]
            rows.append(in_sample)
            out.append(("Ablation: the GAN candidates against the best fusion of the same parts "
                        "without a GAN, each side chosen by the same protocol on the metric of "
                        "its columns",
                        [""] + [h for a in self.ablations for h in (
                            f"{a.label}: GAN", "without a GAN", "GAN gain")], rows))
        return out

    def explanation(self):
        return ("Held-out protocol: for every held-out scene (leave-one-scene-out) or dataset "
                "(leave-one-dataset-out: the top-level folders), the candidate with the best "
                "mean AUC on the other scenes scores the held-out scene(s); the held-out mean "
                "averages those scores over all scenes. Scenes of one image (band sets or "
                "scalings of it on one grid), and the datasets holding them, are held out "
                "together"
                + (f" ({'; '.join(self.twins)})" if self.twins else "") + ". Candidates: "
                f"{', '.join(self.candidates)}."
                + (f" Without a GAN: {', '.join(self.ablation)}." if self.ablation else "")
                + " What was tried and lost before these candidates: docs/ablations.md.")

    def to_dict(self):
        def proto(p):
            return {"name": p.name, "mean": p.mean, "per_seed": p.per_seed, "chosen": p.chosen,
                    "held_out": p.held_out}

        return {"candidates": self.candidates, "in_sample": self.in_sample, "twins": self.twins,
                "selected": self.selected, "protocols": [proto(p) for p in self.protocols],
                "ablation": self.ablation,
                "ablation_protocols": [proto(p) for p in self.ablation_protocols],
                "ablations": [{"metric": a.label, "gan": [proto(p) for p in a.gan],
                               "without_gan": [proto(p) for p in a.base]}
                              for a in self.ablations]}


def check_scene_count(count):
    """Refuse a selection on fewer than two scenes: nothing would be left to choose on."""
    if count < 2:
        raise HsanomalyError(f"{spell('select')}: a held-out selection needs two scenes or more (one "
                             "to choose on, one to score); give more scenes")


def held_out_units(scenes, datasets, images=None):
    """{protocol: {unit: [scenes]}}: each scene alone, each dataset alone, but the scenes of
    one image together and the datasets sharing one merged (``images``: {scene: image}; a
    scene it lacks is an image of its own). A unit's name joins its members' by ``UNITED``."""
    images = images or {}
    by_image = _grouped(scenes, {s: images.get(s, s) for s in scenes})
    names = list(dict.fromkeys(datasets.get(s, "") for s in scenes))
    dataset_of = linked(names, [(datasets.get(members[0], ""), datasets.get(scene, ""))
                                for members in by_image.values() for scene in members[1:]])
    by_dataset = _grouped(scenes, {s: dataset_of[datasets.get(s, "")] for s in scenes})
    merged = _grouped(names, dataset_of)
    return {"leave-one-scene-out": {UNITED.join(m): m for m in by_image.values()},
            "leave-one-dataset-out": {UNITED.join(sorted(merged[key])): m
                                      for key, m in by_dataset.items()}}


def linked(names, pairs):
    """{name: the first of ``names``, in their order, linked to it through ``pairs`` in turn}:
    the parts of the graph ``pairs`` draws, each named by its first member."""
    first = {name: name for name in names}

    def root(name):
        while first[name] != name:
            name = first[name]
        return name

    for a, b in pairs:
        head, tail = sorted((root(a), root(b)), key=names.index)
        first[tail] = head
    return {name: root(name) for name in names}


def _grouped(scenes, key):
    """{key of a scene: its scenes}, in ``scenes``' order."""
    out = {}
    for scene in scenes:
        out.setdefault(key[scene], []).append(scene)
    return out


def select_held_out(runs, candidates, datasets, ablation=None, images=None):
    """The protocols over ``candidates`` (and ``ablation``) on ``runs``; ``datasets``:
    {scene: dataset name}; ``images``: {scene: the image it shows}, where two scenes show one
    (``held_out_units``)."""
    ablation = list(ablation or [])
    table = _metric_table(runs, candidates + ablation)
    scenes = sorted({s for m in candidates for s in table[m]})
    check_scene_count(len(scenes))
    missing = [(m, s) for m in candidates + ablation for s in scenes if s not in table[m]]
    if missing:
        raise HsanomalyError(f"{missing[0][0]}: no result on scene {missing[0][1]}; every "
                             "candidate needs one on every scene to be compared")
    in_sample = {m: _mean(table, m, scenes) for m in candidates + ablation}
    units = held_out_units(scenes, datasets, images)

    def protocols(methods, metric=table):
        return [run_protocol(name, metric, methods, units[name]) for name in PROTOCOLS]

    by_auc, ablations = protocols(candidates), []
    if ablation:
        ablations.append(Ablation("AUC", table, by_auc, protocols(ablation)))
        for label, key in OTHER_METRICS.items():
            other = _metric_table(runs, candidates + ablation, key)
            if all(v is not None for m in other.values() for seeds in m.values()
                   for v in seeds.values()):
                ablations.append(Ablation(label, other, protocols(candidates, other),
                                          protocols(ablation, other)))
    twins = [unit for unit, members in units["leave-one-scene-out"].items() if len(members) > 1]
    return Selection(candidates, scenes, in_sample, _best(table, candidates, scenes), by_auc,
                     ablation, ablations, twins)
