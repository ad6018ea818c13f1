"""A STAND-IN for TensorFlow Serving (``tensorflow_model_server``), not TF Serving itself.

No package registry ships TF Serving's binary, and where the official image cannot be
pulled there is no TF Serving at all. This package stands in for it with TF Serving's
documented REST API over the real SavedModels, loaded with the TensorFlow release the
chart's TF Serving image runs:

- :mod:`serving_standin.server`: the server (:class:`~serving_standin.server.TFServingStandIn`),
  which the tests also run in-process, with fault injection;
- :mod:`serving_standin.cli`: ``tensorflow_model_server``'s flags, so the chart's serving
  Deployment runs the stand-in image (``Dockerfile.serving-standin``) unchanged;
- :mod:`serving_standin.config`: TF Serving's text-protobuf config files.

It does not speak gRPC (the gRPC port is only listened on), does not batch across
requests, and serves predict but not classify or regress. docs/images.md lists what it
does and does not do. Production runs the official ``tensorflow/serving`` image.
"""
