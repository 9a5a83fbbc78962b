"""operator/api"""
