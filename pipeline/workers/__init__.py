"""Workers: the dramatiq broker set-up and thin actors over the plain stage functions."""
