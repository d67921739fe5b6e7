"""Training machinery the classifier and the GAN share: devices and torchrun, weight EMA, memory estimates, export."""
