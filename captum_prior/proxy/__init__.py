"""captum_prior.proxy"""
