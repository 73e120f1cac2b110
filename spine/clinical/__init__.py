"""SpineGAN's clinical loss: a frozen abnormality classifier judges generated images against their labels."""
