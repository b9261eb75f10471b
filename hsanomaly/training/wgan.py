"""WGAN-GP training (Gulrajani et al. 2017, the thesis code's training logic) and resumable checkpoints.

Per generator iteration the critic takes ``critic_steps`` Adam steps on
``D(G(z)) - D(x) + lambda * (||grad D(x_hat)||_2 - 1)^2``, with the penalty computed per sample at
a random point ``x_hat`` between a real and a generated window; then the generator takes one step
on ``-D(G(z))``. Both learning rates decay linearly to zero over the run, as in the upstream
WGAN-GP code. All randomness (batches, z, interpolation weights) comes from one CPU
``torch.Generator`` seeded by ``seed``, so a run repeats exactly on the same device and thread
count (torch splits its sums by thread, and 250 steps amplify the last bits; model.json records
both) and a resumed run continues the same random stream it was interrupted in.
"""

import json
import time

import numpy as np
import torch

from ..errors import Cancelled
from ..io.checks import SMALL_FILE_BYTES, read_npz
from ..logs import progress_bar
from ..spelling import spell
from .settings import UnusableCheckpoint


class TrainingCancelled(Cancelled):
    """The progress callback asked to stop; a checkpoint was saved first."""


LOG_COLUMNS = ("iteration", "seconds", "critic_loss", "generator_loss", "wasserstein",
               "gradient_penalty", "val_wasserstein", "lr")


def gradient_penalty(critic, real, fake, eps):
    """Per-sample ``(||grad_x D(x_hat)||_2 - 1)^2`` at ``x_hat = eps*real + (1-eps)*fake``, shape (N,)."""
    eps = eps.reshape(-1, *([1] * (real.dim() - 1)))
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    score, _ = critic(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square()


class WGANGP:
    """The two networks, their optimisers and the random stream; one ``step`` = one generator iteration."""

    def __init__(self, generator, critic, settings, device="cpu"):
        self.generator = generator.to(device)
        self.critic = critic.to(device)
        self.settings = settings
        self.device = torch.device(device)
        betas = (settings.beta1, settings.beta2)
        self.g_opt = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=betas)
        self.c_opt = torch.optim.Adam(critic.parameters(), lr=settings.lr, betas=betas)
        decay = lambda it: max(0.0, 1.0 - it / settings.iterations)  # noqa: E731
        self.g_sched = torch.optim.lr_scheduler.LambdaLR(self.g_opt, decay)
        self.c_sched = torch.optim.lr_scheduler.LambdaLR(self.c_opt, decay)
        self.rng = torch.Generator().manual_seed(settings.seed)
        self.iteration = 0

    def _draw(self, *shape):
        return torch.randn(*shape, generator=self.rng).to(self.device)

    def _batch(self, data, weights):
        n = self.settings.batch
        if weights is None:
            index = torch.randint(len(data), (n,), generator=self.rng)
        else:
            index = torch.multinomial(weights, n, replacement=True, generator=self.rng)
        return data[index.to(data.device)]

    def critic_objective(self, real, z, eps):
        """(loss, Wasserstein estimate, mean gradient penalty) of the critic on a given batch."""
        with torch.no_grad():
            fake = self.generator(z)
        real_score, _ = self.critic(real)
        fake_score, _ = self.critic(fake)
        penalty = gradient_penalty(self.critic, real, fake, eps).mean()
        wasserstein = real_score.mean() - fake_score.mean()
        return -wasserstein + self.settings.gp_weight * penalty, wasserstein, penalty

    def critic_step(self, real, z, eps):
        """One critic update on a given batch; returns the losses measured before the update."""
        loss, wasserstein, penalty = self.critic_objective(real, z, eps)
        self.c_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.c_opt.step()
        return {"critic_loss": loss.item(), "wasserstein": wasserstein.item(),
                "gradient_penalty": penalty.item()}

    def generator_step(self, z):
        self.critic.requires_grad_(False)
        try:
            score, _ = self.critic(self.generator(z))
            loss = -score.mean()
            self.g_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.g_opt.step()
        finally:
            self.critic.requires_grad_(True)
        return loss.item()

    def step(self, data, weights=None):
        """``critic_steps`` critic updates then one generator update; returns mean losses."""
        s = self.settings
        totals = {"critic_loss": 0.0, "wasserstein": 0.0, "gradient_penalty": 0.0}
        for _ in range(s.critic_steps):
            real = self._batch(data, weights)
            z = self._draw(s.batch, self.generator.latent_dim)
            eps = torch.rand(s.batch, generator=self.rng).to(self.device)
            for key, value in self.critic_step(real, z, eps).items():
                totals[key] += value / s.critic_steps
        totals["generator_loss"] = self.generator_step(self._draw(s.batch, self.generator.latent_dim))
        totals["lr"] = self.g_opt.param_groups[0]["lr"]
        self.g_sched.step()
        self.c_sched.step()
        self.iteration += 1
        return totals

    @torch.no_grad()
    def validation_wasserstein(self, val, z):
        """Critic's Wasserstein estimate between held-out windows and generated ones."""
        real_score, _ = self.critic(val)
        fake_score, _ = self.critic(self.generator(z))
        return (real_score.mean() - fake_score.mean()).item()

    def state_dict(self):
        return {"generator": self.generator.state_dict(), "critic": self.critic.state_dict(),
                "g_opt": self.g_opt.state_dict(), "c_opt": self.c_opt.state_dict(),
                "g_sched": self.g_sched.state_dict(), "c_sched": self.c_sched.state_dict(),
                "rng": self.rng.get_state(), "iteration": self.iteration}

    def load_state_dict(self, state):
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.g_opt.load_state_dict(state["g_opt"])
        self.c_opt.load_state_dict(state["c_opt"])
        self.g_sched.load_state_dict(state["g_sched"])
        self.c_sched.load_state_dict(state["c_sched"])
        self.rng.set_state(state["rng"])
        self.iteration = int(state["iteration"])


def _pack(obj, arrays):
    """A JSON tree of ``obj`` with its tensors moved into ``arrays`` (name -> numpy array)."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(arrays)}"
        arrays[name] = obj.detach().cpu().numpy()
        return {"tensor": name}
    if isinstance(obj, dict):
        return {"dict": [[k, _pack(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"list": [_pack(v, arrays) for v in obj]}
    return {"value": obj}


def _unpack(node, arrays):
    if "tensor" in node:
        return torch.from_numpy(arrays[node["tensor"]].copy())
    if "dict" in node:
        return {k: _unpack(v, arrays) for k, v in node["dict"]}
    if "list" in node:
        return [_unpack(v, arrays) for v in node["list"]]
    return node["value"]


def save_checkpoint(path, trainer, log, key):
    """Tensors in an .npz and everything else as JSON: no pickle, so resuming never runs code
    from a file. Written whole to a private temporary (``io.atomic``: never a predictable name
    a link could redirect), then renamed."""
    from ..io.atomic import atomic_path

    arrays = {}
    tree = _pack({"trainer": trainer.state_dict(), "log": log, "key": key}, arrays)
    with atomic_path(path, is_output=False) as tmp, open(tmp, "wb") as f:
        np.savez(f, __tree__=np.array(json.dumps(tree)), **arrays)


def _checkpoint_bytes(trainer):
    """The most a checkpoint of ``trainer`` unpacks to: its networks' parameters and buffers
    three times (their values and the optimisers' two moments), and the small rest."""
    nets = sum(t.numel() * t.element_size() for net in (trainer.generator, trainer.critic)
               for t in net.state_dict().values())
    return 3 * nets + SMALL_FILE_BYTES


def _change(name, before, now):
    """"iterations: 3000 -> 2000" (given again, the checkpoint resumes), or the name alone
    where the values are no plain settings (the data's fingerprint)."""
    plain = all(isinstance(v, (bool, int, float, str, type(None))) for v in (before, now))
    return f"{name}: {before!r} -> {now!r}" if plain else name


def load_checkpoint(path, trainer, key):
    """Restore ``trainer`` and return the log so far; refuse a checkpoint made for other settings
    (told by its description alone: its tensors are weighed against ``trainer``'s)."""
    def unreadable(err):
        return UnusableCheckpoint(f"{path}: not a readable checkpoint ({type(err).__name__})")

    try:
        tree = json.loads(str(read_npz(path, SMALL_FILE_BYTES, ["__tree__"])["__tree__"]))
        saved = _unpack(dict(tree["dict"]).get("key", {"value": None}), {}) or {}
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint gets the same one-line answer
        raise unreadable(err) from None
    if saved != key:
        changed = [_change(k, saved.get(k), key.get(k)) for k in sorted(key.keys() | saved.keys())
                   if key.get(k) != saved.get(k)]
        made = ("by an earlier hsanomaly, which recorded no "
                f"{', '.join(sorted(key.keys() - saved.keys()))}" if key.keys() - saved.keys()
                else f"with different data or settings ({', '.join(changed)})")
        raise UnusableCheckpoint(f"{path}: checkpoint was made {made}; delete it or train "
                                 f"without {spell('resume', True)}")
    try:
        arrays = read_npz(path, _checkpoint_bytes(trainer))
        arrays.pop("__tree__")
        state = _unpack(tree, arrays)
    except Exception as err:  # noqa: BLE001
        raise unreadable(err) from None
    trainer.load_state_dict(state["trainer"])
    return [list(row) for row in state["log"]]


def fit(trainer, train, val, *, weights=None, log=None, log_every=10, progress=False,
        callback=None, on_checkpoint=None, checkpoint_every=None):
    """Run ``trainer`` up to ``settings.iterations``; returns the log (rows of LOG_COLUMNS).

    ``callback(fraction, message)`` returning True stops the run after a checkpoint and raises
    TrainingCancelled; ``on_checkpoint(log)`` saves one.
    """
    s = trainer.settings
    log = list(log or [])
    val_z = torch.randn(len(val), trainer.generator.latent_dim,
                        generator=torch.Generator().manual_seed(s.seed + 1)).to(trainer.device)
    elapsed = log[-1][1] if log else 0.0
    started = time.perf_counter() - elapsed
    sums, count = {}, 0
    bar = progress_bar(progress, total=s.iterations, initial=trainer.iteration, desc="training",
                       unit="it", leave=False)
    try:
        while trainer.iteration < s.iterations:
            for key, value in trainer.step(train, weights).items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            bar.update(1)
            it = trainer.iteration
            if it % log_every == 0 or it == s.iterations:
                row = {k: v / count for k, v in sums.items()}
                row["val_wasserstein"] = trainer.validation_wasserstein(val, val_z)
                log.append([float(it), time.perf_counter() - started]
                           + [float(row[c]) for c in LOG_COLUMNS[2:]])
                sums, count = {}, 0
                bar.set_postfix({name: f"{row[key]:.3f}" for name, key in
                                 (("critic", "critic_loss"), ("gen", "generator_loss"),
                                  ("W", "wasserstein"), ("val_W", "val_wasserstein"))})
                message = (f"iteration {it}/{s.iterations} (the critic's Wasserstein estimate "
                           f"{row['wasserstein']:.3f})")
                if callback is not None and callback(it / s.iterations, message):
                    if on_checkpoint is not None:
                        on_checkpoint(log)
                    raise TrainingCancelled("training cancelled")
            if on_checkpoint is not None and checkpoint_every and it % checkpoint_every == 0 \
                    and it < s.iterations:
                on_checkpoint(log)
    finally:
        bar.close()
    return log
