"""captum_prior.metrics"""
