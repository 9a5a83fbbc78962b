"""e2e/localcluster"""
