"""Metrics of one model, one pair or one set of models (imports ``core`` and ``runs``).

Modules
    profiles     what a profile along a path says: the mc metric, MLI bumps (no torch)
    hessian      Hessian-vector products, top eigenvalues, trace, spectral density
    similarity   CKA (linear, RBF, debiased, minibatch), mixup, L2 distance
    connectivity Bezier curves, path evaluation, the SGD loop of every path fit, MLI
    directions   directions through weight space, cuts, 2D loss surfaces
    simplex      low-loss simplices and tunnels between solutions
    align        weight matching (permutation alignment)
"""
