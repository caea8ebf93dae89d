"""vaelab's Hydra configs, installed as the package vaelab.conf (read by `vaelab-train`)."""
