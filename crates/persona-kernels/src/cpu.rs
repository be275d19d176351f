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

/// Whether `PERSONA_NO_BF16` turns every bf16 product kernel off (products then run in f32).
fn bf16_disabled() -> bool {
    std::env::var_os("PERSONA_NO_BF16").is_some()
}

/// AVX-512 with BF16 dot products (`vdpbf16ps`): Intel Cooper Lake and later, AMD Zen 4 and
/// later. False under `PERSONA_NO_BF16`.
pub fn has_avx512_bf16() -> bool {
    if bf16_disabled() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Intel AMX with bf16 tiles, and the kernel's permission to use them for this process. False
/// under `PERSONA_NO_AMX` or `PERSONA_NO_BF16`.
pub fn has_amx_bf16() -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    *AMX.get_or_init(|| {
        if std::env::var_os("PERSONA_NO_AMX").is_some() || bf16_disabled() {
            return false;
        }
        request_amx_permission()
    })
}

/// Asks Linux for permission to use the AMX tile data registers, after checking CPUID for
/// AMX-TILE and AMX-BF16. False on other CPUs or kernels. Part of detection, so it lives here
/// below the AMX kernels, which only ask [`has_amx_bf16`].
fn request_amx_permission() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let max_leaf = std::arch::x86_64::__cpuid(0).eax;
        if max_leaf < 7 {
            return false;
        }
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let amx_bf16 = leaf7.edx & (1 << 22) != 0;
        let amx_tile = leaf7.edx & (1 << 24) != 0;
        if !(amx_bf16 && amx_tile) {
            return false;
        }
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain syscall with integer arguments; failure is reported by the return value.
        let r = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        r == 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}
