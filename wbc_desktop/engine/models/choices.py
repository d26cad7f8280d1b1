"""The names a training setting may take, free of TensorFlow so the CLI's
argument parser and the GUI's form can offer them without loading it."""

ARCHITECTURES = ("compact", "resnet50", "efficientnet_lite0")
STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")
COLOUR_SPACES = ("rgb", "lab", "reinhard")
FREEZE_CHOICES = ("none",) + STAGES + ("backbone",)
NORMS = ("batch", "group")
