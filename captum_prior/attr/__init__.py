"""captum_prior.attr"""
