"""`HypernetModule`: the thin Lightning wrapper that trains the `CVAE` (the model itself lives in hypernet.model).

Loss = masked MSE of normalised module tokens (weighted per item: trajectory checkpoints count less) + β·KL, with β
annealed linearly (TrainConfig.beta), + λ·MSE of the decoding at z = 0. The last term exists because generation
with n_samples=1 decodes the prior mean: measured on a synthetic bank, without it the decoder learned to read the
task from z (KL ≈ 18 nats at β = 1e-3) and z = 0 gave relative ΔW errors above 1 even on training tasks.
Normalisation, whitening and the closed-form readout are fitted from the DataModule's training set in `setup`,
before the first step, identically on every rank (the data are deterministic).
"""

from __future__ import annotations

import pytorch_lightning as L
import torch

from loragen.hypernet.config import HypernetConfig
from loragen.hypernet.layout import AdapterLayout
from loragen.hypernet.model import CVAE, kl_divergence, reconstruction_loss


class HypernetModule(L.LightningModule):
    """Lightning glue around `CVAE`.

    Args:
        config: the hypernetwork config.
        layout: the layout of the adapters to generate.
    """

    def __init__(self, config: HypernetConfig, layout: AdapterLayout) -> None:
        super().__init__()
        self.config, self.layout = config, layout
        torch.manual_seed(config.train.seed)  # same init on every rank, before DDP's broadcast makes it certain
        self.model = CVAE(config, layout)
        self._fitted = False

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and dm is not None and not self._fitted:
            dm.setup(stage)
            readout = dm.readout_sample() if self.model.readout is not None else None
            self.fit_statistics(dm.train_set.tokens, dm.whitening_sample(), readout)

    def fit_statistics(self, tokens: torch.Tensor, whitening: dict[str, torch.Tensor],
                       readout: dict[int, tuple[dict[str, torch.Tensor], torch.Tensor]] | None = None) -> None:
        """Fit token normalisation on (N, M, T) training tokens, the condition whiteners on a full sample, and the
        readout (when the model has one) on `readout` (see `HypernetDataModule.readout_sample`)."""
        self.model.fit_normalisation(tokens)
        self.model.condition.fit_whitening(whitening["slots"], whitening["present"], whitening["glob"])
        if readout is not None:
            self.model.fit_readout(tokens, readout)
        self._fitted = True

    def _loss(self, batch: dict, stage: str) -> torch.Tensor:
        tc = self.config.train
        out = self.model(batch["tokens"], batch["cond"], with_mean=tc.mean_weight > 0)
        mask = self.model.token_mask
        recon = reconstruction_loss(out["recon"], out["target"], mask, batch["weight"])
        kl = kl_divergence(out["z_loc"], out["z_scale"], tc.free_bits)
        beta = tc.beta(self.global_step) if stage == "train" else tc.kl_weight
        loss = recon + beta * kl
        logs = {f"{stage}/loss": loss, f"{stage}/recon": recon, f"{stage}/kl": kl}
        if "mean" in out:
            logs[f"{stage}/recon_mean"] = mean = reconstruction_loss(out["mean"], out["target"], mask, batch["weight"])
            loss = loss + tc.mean_weight * mean
            logs[f"{stage}/loss"] = loss
        bs = batch["tokens"].shape[0]
        self.log_dict(logs,
                      prog_bar=stage == "train", batch_size=bs, sync_dist=stage != "train")
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._loss(batch, "val")

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and dm.train_set is not None:
            dm.train_set.epoch = self.current_epoch  # redraw wordings, labels and examples each epoch

    def configure_optimizers(self):
        tc = self.config.train
        opt = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1000
        total = max(int(total), 1) if total != float("inf") else 1000
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=total, pct_start=0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
