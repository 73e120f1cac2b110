"""SpineGAN's clinical loss: a frozen abnormality classifier judges generated images against their labels
(`loss`, a generator term), its --clinical-* options (`options`), and label fidelity, the same judgement measured
on samples (`label_fidelity`). Two experimental generator terms against the class difference short runs
exaggerate (docs/RESULTS.md section F): class feature matching (`feature_match`, --clinical-match) and class
locality (`locality`, --class-locality, options in `locality_options`)."""
