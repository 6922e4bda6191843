"""captum_prior.training"""
