"""Data: DICOM decoding, VinDr-SpineXR labels, study-level splits, the importer and its preview grids."""
