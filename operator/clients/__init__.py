"""operator/clients"""
