"""FednnU-Net's strategies as a Flower ServerApp (see docs/flower.md in FednnU-Net Web)."""
