//! A library that claims a rule ABI version shoal does not speak. The host must refuse it by its
//! version alone, before it reads any other symbol.

/// Version 999 of the rule ABI (shoal speaks 1).
#[unsafe(no_mangle)]
pub extern "C" fn shoal_rule_abi_version() -> u32 {
    999
}
