"""Witches' Brew (Geiping et al., ICLR 2021), gradient matching, adapted to contrastive pre-training.

The poisoning inputs are reference inputs of the target class with a small perturbation
(``||delta||_inf <= epsilon``, 8/255 by default). The perturbation is chosen so that their
*training* gradient on a surrogate points where the attacker wants training to go. Then a
victim that trains on them takes steps that serve the attacker:

* surrogate: a model of the victim's method pre-trained on clean data (the attacker's own,
  of the same distribution; here the shared clean encoder of the configuration);
* attacker objective: ``1 - cos(f(target input), mean f(reference inputs))`` on backbone features,
  which pulls each target input toward its target class; its gradient ``g_adv`` over the
  backbone's parameters;
* training gradient: the gradient of the method's own loss (SimCLR: NT-Xent) on two augmented
  views of the perturbed poisoning inputs, ``g_poison(delta)``;
* objective: ``1 - cos(g_poison(delta), g_adv)`` over all backbone parameters at once. It is
  minimised by signed Adam (step ``step_size * epsilon``, decayed tenfold at 3/8, 5/8 and 7/8 of
  the steps). Each step draws fresh views (the augmentation is differentiable: the same crop,
  flip and jitter code as pre-training). ``restarts`` random starts, keep the best.

The surrogate runs in eval mode (batch norm on its running statistics), so the gradients do not
depend on which poisoning inputs share a batch. The poisoning inputs of one target input are
optimised together as one batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ..core.settings import Number, Range, Settings
from .base import Attack, PoisoningInput


@dataclass
class Surrogate:
    model: torch.nn.Module        # an SSLMethod with .backbone and .loss(x1, x2)
    augment: object               # ssl.augment.AugmentParams of the victim's pre-training
    device: str = "cpu"


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


class WitchesBrewSettings(Settings):
    epsilon: Annotated[Number, Range(0.0, 1.0)] = Field(8 / 255, description="L-inf budget (8/255)")
    steps: Annotated[int, Range(1, 100000)] = Field(40, description="signed-Adam steps per target input")
    restarts: Annotated[int, Range(1, 1000)] = 1
    step_size: Annotated[Number, Range(1e-6, 10.0)] = Field(0.1, description="Adam step as a fraction of epsilon")


class WitchesBrew(Attack):
    name = "witches_brew"
    Settings = WitchesBrewSettings
    needs_surrogate = True

    def make(self, targets, tasks, per_target, rng, surrogate):
        sur: Surrogate = surrogate
        out, self.seconds, self.matching = [], 0.0, []
        t0 = time.time()
        for tid, t in enumerate(targets):
            ds = tasks[t.task]
            idx = [t.reference_indices[j % len(t.reference_indices)] for j in range(per_target)]
            imgs, loss = self.brew(sur, ds.test.images[t.test_index], ds.train.images[t.reference_indices],
                                   ds.train.images[idx], int(rng.integers(2**31)))
            self.matching.append(loss)
            out += [PoisoningInput(im, tid, r, "perturbed", True) for im, r in zip(imgs, idx, strict=True)]
        self.seconds = time.time() - t0
        return out

    def brew(self, sur: Surrogate, target: np.ndarray, references: np.ndarray, bases: np.ndarray,
             seed: int) -> tuple[np.ndarray, float]:
        """Perturb the uint8 ``bases`` (N, H, W, 3). Returns the poisoning inputs (uint8) and the
        final gradient-matching loss ``1 - cos``."""
        from ..ssl.augment import apply_views, sample_view_params

        s, dev, model = self.settings, sur.device, sur.model
        eps = float(s.epsilon)
        model.eval()
        params = [q for q in model.backbone.parameters() if q.requires_grad]
        as_x = lambda a: torch.as_tensor(a, device=dev).permute(0, 3, 1, 2).float().div(255)  # noqa: E731
        xt, xr, base = as_x(target[None]), as_x(references), as_x(bases)
        ft = model.backbone(xt)  # the backbone normalizes its input
        with torch.no_grad():
            fr = model.backbone(xr).mean(0, keepdim=True)
        g_adv = _flat(torch.autograd.grad((1 - F.cosine_similarity(ft, fr)).sum(), params)).detach()
        g = torch.Generator().manual_seed(seed)
        n, _, h, w = base.shape

        def matching(x: torch.Tensor, views) -> torch.Tensor:
            x1, x2 = apply_views(x, views, sur.augment.size)
            g_poison = _flat(torch.autograd.grad(model.loss(x1, x2), params, create_graph=True))
            return 1 - F.cosine_similarity(g_poison, g_adv, dim=0)

        # fixed views on which restarts are compared (and the result reported)
        ge = torch.Generator().manual_seed(seed + 1)
        eval_views = [[sample_view_params(n, h, w, sur.augment, ge) for _ in range(2)] for _ in range(4)]
        best, best_loss = None, float("inf")
        for _ in range(s.restarts):
            delta = ((torch.rand(base.shape, generator=g) * 2 - 1) * eps).to(dev)
            delta = ((base + delta).clamp(0, 1) - base).requires_grad_(True)
            opt = torch.optim.Adam([delta], lr=s.step_size * eps)
            k = s.steps
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, [k * 3 // 8, k * 5 // 8, k * 7 // 8], 0.1)
            for _ in range(k):
                v = [sample_view_params(n, h, w, sur.augment, g) for _ in range(2)]
                (grad,) = torch.autograd.grad(matching(base + delta, v), delta)
                opt.zero_grad(set_to_none=True)
                delta.grad = grad.sign()
                opt.step()
                sched.step()
                with torch.no_grad():
                    delta.clamp_(-eps, eps)
                    delta.copy_((base + delta).clamp(0, 1) - base)
            final = float(np.mean([matching(base + delta.detach(), v).item() for v in eval_views]))
            if final < best_loss:
                best, best_loss = delta.detach().clone(), final
        imgs = ((base + best).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return imgs, best_loss
