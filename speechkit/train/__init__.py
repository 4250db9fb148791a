"""The one trainer for every model (AR, NAR, ST): config, schedules, checkpoints, DDP, logs.

A stage module uses it like this::

    from speechkit.config import validate_options
    from speechkit.data.sampler import BucketBatchSampler
    from speechkit.train import Trainer, TrainerConfig, build_loader, init_distributed, prepare_exp_dir

    train_cfg = validate_options(TrainerConfig, cfg.train, where="train")
    dist = init_distributed(train_cfg.device)                       # no-op without torchrun
    sampler = BucketBatchSampler(dataset.lengths, max_frames=cfg.data.max_frames, seed=train_cfg.seed)
    loader = build_loader(dataset, sampler, collate_fn, train_cfg.num_workers)
    if dist.is_main:
        prepare_exp_dir(exp_dir, cfg)                                  # config.yaml + resume.sh
    result = Trainer(model, loader, exp_dir, train_cfg, valid_loader=dev_loader).fit()
    # model now holds the averaged weights (exp_dir/averaged.pt); save a pack from it
"""
from speechkit.train.checkpoint import (
    average_model_states,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from speechkit.train.config import TrainerConfig
from speechkit.train.distributed import DistInfo, cleanup_distributed, init_distributed
from speechkit.train.experiment import prepare_exp_dir, write_resume_command
from speechkit.train.metrics_log import plot_curves, read_log
from speechkit.train.trainer import AVERAGED, TrainResult, Trainer, build_loader, default_optimizer

__all__ = [
    "AVERAGED", "DistInfo", "TrainResult", "Trainer", "TrainerConfig", "average_model_states",
    "build_loader", "cleanup_distributed", "default_optimizer", "init_distributed", "list_checkpoints",
    "load_checkpoint", "plot_curves", "prepare_exp_dir", "read_log", "save_checkpoint",
    "seed_everything", "write_resume_command",
]
