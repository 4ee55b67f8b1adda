"""The claims each part registers with :mod:`icl_course.reproduce`, one module per part."""
