"""SpineGAN's clinical loss: a frozen abnormality classifier judges generated images against their labels
(`loss`, a generator term), its --clinical-* options (`options`), and label fidelity, the same judgement measured
on samples (`label_fidelity`)."""
