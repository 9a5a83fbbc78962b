"""operator/manifests"""
