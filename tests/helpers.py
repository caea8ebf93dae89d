"""Test-only callbacks, referenced from configs as ``+callbacks.x._target_=helpers.Name``."""
import lightning as L


class InterruptAfterEpoch(L.Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) at the end of epoch index `epoch`."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt
