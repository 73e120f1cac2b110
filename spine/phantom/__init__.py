"""The seeded VinDr-SpineXR-shaped phantom: anatomy, lesions, image rendering and the DICOM/CSV tree."""
