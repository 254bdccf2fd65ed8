"""medssl.pipelines."""
