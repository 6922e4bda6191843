"""captum_prior.priors"""
