//! What the CPU supports, detected once at run time.

use std::sync::OnceLock;

/// AVX-512 with VNNI int8 dot products.
pub fn has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Intel AMX with bf16 tiles, and the kernel's permission to use them for this process.
pub fn has_amx_bf16() -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    *AMX.get_or_init(|| {
        if std::env::var_os("PERSONA_NO_AMX").is_some() {
            return false;
        }
        crate::amx::request_permission()
    })
}
