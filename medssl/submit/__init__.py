"""medssl.submit."""
