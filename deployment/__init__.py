"""Kubernetes deployment of driftline: images, Helm values, manifests and the k8s settings
that assets and jobs import (`deployment.k8s_config`)."""
