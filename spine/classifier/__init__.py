"""The spine classifier: the classifier.pkl artifact, architectures, labelled data, training and its CLI."""
