/* libp2p TLS certificate checks: the four vectors of libp2p/specs
 * tls/tls.md, extra vectors made with python-cryptography (other key types,
 * critical extensions, bad dates, duplicates), this host's own certificate,
 * and tampered copies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "np_crypto.h"
#include "np_err.h"
#include "np_identity.h"
#include "np_log.h"
#include "np_peerid.h"
#include "np_tls.h"
#include "tap.h"

/* tls/tls.md, "Test vectors" */
static const char spec1[] =
    "308201ae30820156a0030201020204499602d2300a06082a8648ce3d0403023020311230"
    "10060355040a13096c69627032702e696f310a300806035504051301313020170d373530"
    "3130313133303030305a180f34303936303130313133303030305a302031123010060355"
    "040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d"
    "020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7"
    "a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d817"
    "3e55bd37e381569ea37c307a3078060a2b0601040183a25a0101046a3068042408011220"
    "a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b90440d90d"
    "2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a435519941cac215a8207792"
    "e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a06082a8648ce3d04"
    "03020346003043021f50f6b6c52711a881778718238f650c9fb48943ae6ee6d28427dc60"
    "71ae55e702203625f116a7a454db9c56986c82a25682f7248ea1cb764d322ea983ed36a3"
    "1b77";
static const char spec1_id[] =
    "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv";
static const char spec2[] =
    "308201f63082019da0030201020204499602d2300a06082a8648ce3d0403023020311230"
    "10060355040a13096c69627032702e696f310a300806035504051301313020170d373530"
    "3130313133303030305a180f34303936303130313133303030305a302031123010060355"
    "040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d"
    "020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7"
    "a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d817"
    "3e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa04"
    "5f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f"
    "909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b"
    "512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f2044730450220064ea8124774"
    "caf8f50e57f436aa62350ce652418c019df5d98a3ac666c9386a022100aa59d704a931b5"
    "f72fb9222cb6cc51f954d04a4e2e5450f8805fe8918f71eaae300a06082a8648ce3d0403"
    "0203470030440220799395b0b6c1e940a7e4484705f610ab51ed376f19ff9d7c16757cfb"
    "f61b8d4302206205c03fbb0f95205c779be86581d3e31c01871ad5d1f3435bcf375cb0e5"
    "088a";
static const char spec2_id[] = "QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE";
static const char spec3[] =
    "308201ba3082015fa0030201020204499602d2300a06082a8648ce3d0403023020311230"
    "10060355040a13096c69627032702e696f310a300806035504051301313020170d373530"
    "3130313133303030305a180f34303936303130313133303030305a302031123010060355"
    "040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d"
    "020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7"
    "a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d817"
    "3e55bd37e381569ea38184308181307f060a2b0601040183a25a01010471306f04250802"
    "12210206dc6968726765b820f050263ececf7f71e4955892776c0970542efd689d238204"
    "4630440220145e15a991961f0d08cd15425bb95ec93f6ffa03c5a385eedc34ecf464c7a8"
    "ab022026b3109b8a3f40ef833169777eb2aa337cfb6282f188de0666d1bcec2a4690dd30"
    "0a06082a8648ce3d0403020349003046022100e1a217eeef9ec9204b3f774a08b7084964"
    "6b6a1e6b8b27f93dc00ed58545d9fe022100b00dafa549d0f03547878338c7b15e750288"
    "8f6d45db387e5ae6b5d46899cef0";
static const char spec3_id[] =
    "16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs";
static const char spec4[] =
    "308201f73082019da0030201020204499602d2300a06082a8648ce3d0403023020311230"
    "10060355040a13096c69627032702e696f310a300806035504051301313020170d373530"
    "3130313133303030305a180f34303936303130313133303030305a302031123010060355"
    "040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d"
    "020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7"
    "a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d817"
    "3e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa04"
    "5f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f"
    "909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b"
    "512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f204473045022100bb6e03577b"
    "7cc7a3cd1558df0da2b117dfdcc0399bc2504ebe7de6f65cade72802206de96e2a5be9b6"
    "202adba24ee0362e490641ac45c240db71fe955f2c5cf8df6e300a06082a8648ce3d0403"
    "020348003045022100e847f267f43717358f850355bdcabbefb2cfbf8a3c043b203a1478"
    "8a092fe8db022027c1d04a2d41fd6b57a7e8b3989e470325de4406e52e084e34a3fd56ee"
    "f0d0df";
/* gen_rsa_host: rsa host key, p256 cert key, peer
 * QmQHAtyb7ab3X23bEP9rRBX1NuJ3cpKfRUDKy7HC8GgJFZ */
static const char gen_rsa_host[] =
    "3082035e30820303a0030201020204499602d2300a06082a8648ce3d040302300c310a30"
    "0806035504051301313020170d3234303130313030303030305a180f3231323430313031"
    "3030303030305a300c310a300806035504051301313059301306072a8648ce3d02010608"
    "2a8648ce3d030107034200048b556fc54f98a7273a584bd1d118aa184172272fd803df1e"
    "96eca77baa15209625c15a34f2b898a0caf226e8916cb92f8759cbc3c07864dd320955ec"
    "5125c087a382024f3082024b30820247060a2b0601040183a25a01010482023730820233"
    "0482012b080012a60230820122300d06092a864886f70d01010105000382010f00308201"
    "0a02820101008e263325fddc3370a09b02046b4548dc138f1bbabf5af6ea046d7e6890ef"
    "9fc19cd20065d37532bb821c1f97f6039db6cd849e31409b1ab1dc2c446dce74386d7143"
    "024580edf818cfdd426c4ca6a6f6e3aeef727e86d42cb4f2983a0caf10c64c3396c092b9"
    "81973569bc85dbbc6b67fd0a9007a7fc70388153930951f3bba9021b88cd8549e0a3537c"
    "fc4d10d670237ccf88ed3e3d354df89a8abff5ef3657e6d03cf1c6521d0317a49829e65e"
    "02159cf7ec010c6621dd16d2f88e6cbac8cd37acb36200feed2bd0d0d2d0795c3d7d55f3"
    "6198415a8b1a0f45fd4667f7be85cbd260772080bb4f1bf4084b001bf9f2e187eb5e3dc6"
    "9557822bb93ef50647f50203010001048201005b20c293df9ab0387f69a36b6ce24ca847"
    "9f5aaa27fceacc0d3c6147cb43096703f9c50a6a88079c88547378f9efdb95fd45bb26a4"
    "c1de31ad8d7f38aa3d99bb0de70b3b4f0f7fad60a6eaa2424403fc0e48e9c9645951530b"
    "8a13066ace531b43a9003abdcb36eabb58958f61172e89770ef44c398ccca54638a651ad"
    "51b38af12c4f269a90cf07434121b2e6bb21bf0df0995210f985b30123863970907c7938"
    "c0a2f53e82b14f3020d01d677ce220107c32d3f3c49da1c24e810874bc78a02914641b58"
    "23545cae50ec73fc248a92684f6ef6cf24755af52ffcbb04f3beed7462b9bbcced621437"
    "94f3960c13b48e1dd1704ac8557fe88ac71ebfde1b41a5300a06082a8648ce3d04030203"
    "49003046022100bb0ace3bb1044cd2d995a391e04c978b6cadc96df81beb67e4d1bc1eb5"
    "b6b4bd022100c5530512f004cfb71ecdf9dea537d825fc10c9f58b2522f0ed569842410f"
    "2a8c";
static const char gen_rsa_host_id[] =
    "QmQHAtyb7ab3X23bEP9rRBX1NuJ3cpKfRUDKy7HC8GgJFZ";
/* gen_p256_host: p256 host key, p256 cert key, peer
 * QmYDivSAMkUsH4mACJbBd4KRV7tKQWRPQkm3J1RgsVQNPe */
static const char gen_p256_host[] =
    "308201cf30820175a0030201020204499602d2300a06082a8648ce3d040302300c310a30"
    "0806035504051301313020170d3234303130313030303030305a180f3231323430313031"
    "3030303030305a300c310a300806035504051301313059301306072a8648ce3d02010608"
    "2a8648ce3d0301070342000432d5be08386b2f1e2b9c7699cbc00e360cfc5805e28da5f9"
    "a7b634f9160ed2dbed1282594919eccfd1b86a4075060a7b31063426df168667d238b094"
    "8c858c67a381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f080312"
    "5b3059301306072a8648ce3d020106082a8648ce3d03010703420004c3ad70e724378e65"
    "e22bafab857cd782f51e28b3340074d148d2110b956299fd4c419735dabce30a0e4e1645"
    "0fb0a138afdde2c12f1c4d69eeacffba905200790447304502200ca1b97befb0176b4330"
    "7df879b75f2786c0597ed235aed334c128916b2e33f0022100a302a4afe625d5182075d7"
    "b30c6c9f15202647d1fa76a63a8a67c9bd925654bb300a06082a8648ce3d040302034800"
    "30450220415c8c1f42ea0cbaaca185c3e0299eeb078d5b3bb7136035eee7b872e3084ed2"
    "022100b7c3652bb12ae943fd9e01eda258c6e60398511cddeeb1716784b26843998207";
static const char gen_p256_host_id[] =
    "QmYDivSAMkUsH4mACJbBd4KRV7tKQWRPQkm3J1RgsVQNPe";
/* gen_crit_libp2p: ed25519 host key, p256 cert key, peer
 * 12D3KooWLmxydz2QfHX1qc4SJNudEbyy3DgS5DGPU4CPMkn6SWu7 */
static const char gen_crit_libp2p[] =
    "3082018c30820131a0030201020204499602d2300a06082a8648ce3d040302300c310a30"
    "0806035504051301313020170d3234303130313030303030305a180f3231323430313031"
    "3030303030305a300c310a300806035504051301313059301306072a8648ce3d02010608"
    "2a8648ce3d03010703420004d5672e23f093334c3c3f85f5d3bf4e33a0d94eb73f08312e"
    "8936d5ba05b17efee5b131262731321e05157e8d8683f86b2ac89f52789b6136fdda44f9"
    "6652f7c4a37f307d307b060a2b0601040183a25a01010101ff046a3068042408011220a2"
    "d32c003e8d6c05267a1324d08b1bd9478ef695c514491b9061e9ad3ed07bfa04401241d4"
    "ddb60d7a174644bf95f408e2eeb314cc64bab5c6c2f0b64b55c1c0fd8be14b2403a63c76"
    "27092bbeb6b47c68616fe305ea3cb7558b8e5392bfb73c4d0d300a06082a8648ce3d0403"
    "0203490030460221009c12587bbcce89371535afa0e770baab26f904aef755098e4ed28a"
    "23cb45359b02210083c0da60d2da79761c875be07352294d5c160e646ed6b6c745a4c59d"
    "cc258f3e";
static const char gen_crit_libp2p_id[] =
    "12D3KooWLmxydz2QfHX1qc4SJNudEbyy3DgS5DGPU4CPMkn6SWu7";
/* gen_crit_unknown: ed25519 host key, p256 cert key, peer
 * 12D3KooWAK9WmYp4NE8cE6rUtByGXpoEVmKBNc6L8dTf6wVZYNEg */
static const char gen_crit_unknown[] =
    "3082019e30820144a0030201020204499602d2300a06082a8648ce3d040302300c310a30"
    "0806035504051301313020170d3234303130313030303030305a180f3231323430313031"
    "3030303030305a300c310a300806035504051301313059301306072a8648ce3d02010608"
    "2a8648ce3d030107034200048a77eea47e6f40aff61fb86ba20837bee91257b68aa4958d"
    "8843c787f795541c5f2250c59d484b3bc30fefe228ced24245953359c609f173ac8c2412"
    "8bafafb0a3819130818e3078060a2b0601040183a25a0101046a3068042408011220075f"
    "88e17c7360d4947a4b65bf2e53dd29874d515062a645e12fb7c2a7a549650440aa13969c"
    "e384f5d4c00ecffb5fd9545ea654361b3fa4f2478a3348346bc111e11325c3adede497ab"
    "cb1a33183bae95d6741daf98471c42a26fa44023c9512d08301206092b06010401868d1f"
    "010101ff04020500300a06082a8648ce3d0403020348003045022100bbf45b7ddfef6aa9"
    "663703b62edc62b34a72eb0d6726613cab63f8df865ba65b02203a463425ef514534d23d"
    "c801cc1d4decc384622b671d7233ab69fc9d46ca456f";
/* gen_noncrit_unknown: ed25519 host key, p256 cert key, peer
 * 12D3KooWSSgW8xQj6UDqwRzP4jaLEpiUvtuLsorSXgCVQ5ZkvfMn */
static const char gen_noncrit_unknown[] =
    "3082019b30820141a0030201020204499602d2300a06082a8648ce3d040302300c310a30"
    "0806035504051301313020170d3234303130313030303030305a180f3231323430313031"
    "3030303030305a300c310a300806035504051301313059301306072a8648ce3d02010608"
    "2a8648ce3d03010703420004052694855e9626da7c5723bac097e8965a333b76d87c6c43"
    "6a383d711e5ac62865f3f2537ca0b03e7c0da6e61c6988e79bfc6cf9b5008ef42e0c7493"
    "a21297eea3818e30818b3078060a2b0601040183a25a0101046a3068042408011220f708"
    "a174c357c033aa8094655be4cba65be23c9fcacfa203853157259a4aa885044071086599"
    "f855c1d5b3b78947e3f22f42822158626799bd545f0389ab0daa4ab3fbc75e226958b56a"
    "4a35b497336afd6e6a70e8dbbfe8559bdb3938f946962c02300f06092b06010401868d1f"
    "0104020500300a06082a8648ce3d040302034800304502210086b7325f907485548c1b1a"
    "a46642878ac4433b0b532d12b49e73a9fb9ff6186902202eae8619b10e86ce9b5f00d816"
    "223a95dd0b5421d27822d7bfc81e5e1dabcd82";
static const char gen_noncrit_unknown_id[] =
    "12D3KooWSSgW8xQj6UDqwRzP4jaLEpiUvtuLsorSXgCVQ5ZkvfMn";
/* gen_p384_cert: ed25519 host key, p384 cert key, peer
 * 12D3KooWHsE1qD4NYE7DmbQWsRAYLspL6dSaYBx6EByG862oC277 */
static const char gen_p384_cert[] =
    "308201c63082014ba0030201020204499602d2300a06082a8648ce3d040303300c310a30"
    "0806035504051301313020170d3234303130313030303030305a180f3231323430313031"
    "3030303030305a300c310a300806035504051301313076301006072a8648ce3d02010605"
    "2b81040022036200048a8972051197adecb3b77944b97a9d31679929bd84e80899d4424f"
    "2502d8e4dd2c3e9e1b0e6e08ccda4c62bcf485ee00d5a30add7377ec389146c8208984e3"
    "29f38782aacda25a268146cd2063a5fb039d38f470f781e01c9d25209dae7230fea37c30"
    "7a3078060a2b0601040183a25a0101046a3068042408011220779904b9e88c4bc70e4ee9"
    "7c96d2602e0c1988c50e9ab61aba04d482d7b9c47e0440efba26aa40e57b43535ae53879"
    "d6012fab98d56d4fb6c13946df961cf187b80c95e8596cc18889d91e0c6ea7f3df800d4a"
    "bfa39f14ced0007012d8e8879ac108300a06082a8648ce3d04030303690030660231009b"
    "e8c9135f99937df726286db5e243886b64c88cb284109be42d95451611d6f68a02b9a38f"
    "b5ee0ce10b7536fadd2aa6023100af5cc522c7e4130fdd9f02fb43636b198febd4ad3351"
    "b44e1f0fc43b93486b5fe03c0267233a20426588fa43f391db63";
static const char gen_p384_cert_id[] =
    "12D3KooWHsE1qD4NYE7DmbQWsRAYLspL6dSaYBx6EByG862oC277";
/* gen_ed25519_cert: ed25519 host key, ed25519 cert key, peer
 * 12D3KooWEBPrvqvhFEY4Ju4xD8KTdgRC8DgPubzC6mWiisqkdo3F */
static const char gen_ed25519_cert[] =
    "308201473081faa0030201020204499602d2300506032b6570300c310a30080603550405"
    "1301313020170d3234303130313030303030305a180f3231323430313031303030303030"
    "5a300c310a30080603550405130131302a300506032b6570032100bab0b5a6f93021002c"
    "2df17dadbd71f2fdfad69021675884e604399ebdde6ce7a37c307a3078060a2b06010401"
    "83a25a0101046a306804240801122040d1dbda0d6945163ac3a03d76c9ee001f572b8315"
    "5b45781ab7037c2bddd44a044041334ee19e0138ebe0b57115262f1cd3da29c3bcabd6e3"
    "26834fbba370047b580ade4a24686f4f61e0bcf6e2bf52fb6d91da7cbcddf9c6b8cf6d2b"
    "312f389b0c300506032b6570034100038ec8f3af4dbc9acd914f7d4cb59f6026737a213c"
    "2f8949d5e9950ae189d156b5cba3a7015bfe81568c6cf393466366621a133a3e71d1347a"
    "61b5b359b8400a";
static const char gen_ed25519_cert_id[] =
    "12D3KooWEBPrvqvhFEY4Ju4xD8KTdgRC8DgPubzC6mWiisqkdo3F";
/* gen_expired: ed25519 host key, p256 cert key, peer
 * 12D3KooWMHY8CFEXsnBFomsY4yRM5RyPsfqA4jLLDp8pBWN16qTG */
static const char gen_expired[] =
    "308201873082012ca0030201020204499602d2300a06082a8648ce3d040302300c310a30"
    "080603550405130131301e170d3030303130313030303030305a170d3031303130313030"
    "303030305a300c310a300806035504051301313059301306072a8648ce3d020106082a86"
    "48ce3d03010703420004230b7dc3b9c43369770da78909ea9ee46df7736e52bfa4e302b4"
    "b2e00d9fce4b2e69bbc9912b4c1fce9e5eec71c7de973d47ed6757ec2a9032799d509b42"
    "0fc6a37c307a3078060a2b0601040183a25a0101046a3068042408011220aa667ed02b77"
    "62e30e0575e8b8a75d55cc362af46078383b359f0e06d88db4db04401da2b0ad0fb70756"
    "c0c717b912de8160f8924a87c6a74fbafe535c9408026b285944017e349ee8af77a6374f"
    "2264db47689095b5986eb5fd6b364294217b350a300a06082a8648ce3d04030203490030"
    "46022100a498b662ebc184d516576b6d8ea7de1f8cb1633e1bbb003d232b40df76447cae"
    "022100a5415c5eead5b14de8bcbae452aae7327a4bb61e61daaa9d772c501fc2029c08";
/* gen_dup_ext: ed25519 host key, p256 cert key, peer
 * 12D3KooWGMUgCmGXFy8aWu3Jk6k5ZXdKwyEkKsWgAtpFRVqMV3WN */
static const char gen_dup_ext[] =
    "30820204308201aaa0030201020204499602d2300a06082a8648ce3d040302300c310a30"
    "0806035504051301313020170d3234303130313030303030305a180f3231323430313031"
    "3030303030305a300c310a300806035504051301313059301306072a8648ce3d02010608"
    "2a8648ce3d03010703420004d370cfebcdd57ff90d28e9f088a7b891fee02eafdd4322e1"
    "b5d7ae3cce6d8041ffb8dea9bb7fec283907e2df998d4741583bf54fa96284926a73feb0"
    "76f66971a381f73081f43078060a2b0601040183a25a0101046a3068042408011220611e"
    "7c33beabd6ddd07536ea9a7cf1870de6dd75978b3921ef2a2d9d7f45938f0440ff59e72c"
    "4cbe0c1c9edc9a8a9cb7c52b2e06ab6d5d970d9fbc3e1c07d13db01aa5a38f9d0db4ac41"
    "55898a2e24d661f86e17aa20910400d1410102126719f7063078060a2b0601040183a25a"
    "0101046a3068042408011220611e7c33beabd6ddd07536ea9a7cf1870de6dd75978b3921"
    "ef2a2d9d7f45938f0440ff59e72c4cbe0c1c9edc9a8a9cb7c52b2e06ab6d5d970d9fbc3e"
    "1c07d13db01aa5a38f9d0db4ac4155898a2e24d661f86e17aa20910400d1410102126719"
    "f706300a06082a8648ce3d04030203480030450220758dfc742f0a609390c22ad02367d5"
    "959b3e9449ed87511242e3ff81c74773e5022100db1af54c0fff3de634f50b59344f5db7"
    "64ccc5ac2a71e3bc9ec470c9749874ac";
/* gen_no_ext: ed25519 host key, p256 cert key, peer
 * 12D3KooWJERDMuj3hyjddE4gkMZuuzbWhTXigVu1SZM2dFH9Ez3F */
static const char gen_no_ext[] =
    "3082011d3081c5a0030201020204499602d2300a06082a8648ce3d040302300c310a3008"
    "06035504051301313020170d3234303130313030303030305a180f323132343031303130"
    "30303030305a300c310a300806035504051301313059301306072a8648ce3d020106082a"
    "8648ce3d030107034200044dc07bcde30c18839b4bccf9905a98c88dd033d18391a96447"
    "8aa98d626f44c9aeb5bebb37827cc8ca1c454e733fb452925990e86af2dbc485a7afef43"
    "83f1e8a3133011300f06092b06010401868d1f0104020500300a06082a8648ce3d040302"
    "0347003044022025378ac640e11a2f6192b711e81a486b0f9ede9c542b14c4a05185b040"
    "bf2f7b022065a65aa5b2f59caf2fc03d9aaab0259e95fc7e27635aa71844331db0270edf"
    "41";
/* gen_bad_host_sig: ed25519 host key, p256 cert key, peer
 * 12D3KooWJZmVm7kVXaSeMLS4yBWGek4qjxxWiA9nmeU547nSt21E */
static const char gen_bad_host_sig[] =
    "308201883082012ea0030201020204499602d2300a06082a8648ce3d040302300c310a30"
    "0806035504051301313020170d3234303130313030303030305a180f3231323430313031"
    "3030303030305a300c310a300806035504051301313059301306072a8648ce3d02010608"
    "2a8648ce3d0301070342000414f69e95d279c4657590e730a37752111e46c361fc286e4f"
    "402b2de12ec5c008b0e4a4543a6812325fc5ca55247d215eb3934dc0906389d8ef102187"
    "454c2227a37c307a3078060a2b0601040183a25a0101046a306804240801122081fbd8dc"
    "bc5c9bcb3d15a425ae1e0d794158e8b2c9fc58340723edba814da1d9044041afbf3e1430"
    "6736e5ecf1d7200427cfe38954efc1ad0fe659245660eb94c0c1ec1c8056470408ffe18a"
    "a3821c39bcc2dc4a3fe221243da30ad2c00c100ae60f300a06082a8648ce3d0403020348"
    "003045022066eb2d563ed472cd88dda434b04eee4670ad597c35feafae202b0edbfefbf9"
    "09022100943014d25b64c3a38a91cae03a7719931c56ddb1275bf9056338050cf1565f89";

/* The gen_* vectors were made once with python-cryptography 48 (script not
 * kept); validity 2024-01-01 .. 2124-01-01 unless stated. */
#define NOW_2025 1735689600 /* 2025-01-01T00:00:00Z */

static size_t unhex(const char *h, uint8_t *out, size_t cap) {
  size_t n = strlen(h) / 2;
  if (n > cap)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(h + 2 * i, "%2x", &v);
    out[i] = (uint8_t)v;
  }
  return n;
}

static uint8_t buf[4096];

/* Verifies hex |h| at |now|; returns the result, with the ID text in |id|. */
static int verify_hex(const char *h, int64_t now, char *id, size_t cap) {
  size_t n = unhex(h, buf, sizeof(buf));
  np_peerid pid;
  int rv = np_tls_verify_cert(buf, n, now, &pid);
  id[0] = 0;
  if (rv == 0)
    np_peerid_to_string(&pid, id, cap);
  return rv;
}

static void check_valid(const char *name, const char *h, const char *want,
                        int64_t now) {
  char id[NP_PEERID_STRMAX];
  int rv = verify_hex(h, now, id, sizeof(id));
  is_int(rv, 0, "%s verifies", name);
  is_str(id, want, "%s yields its peer ID", name);
}

static void check_invalid(const char *name, const char *h, int want,
                          int64_t now) {
  char id[NP_PEERID_STRMAX];
  is_int(verify_hex(h, now, id, sizeof(id)), want, "%s is rejected (%s)", name,
         np_errname(want));
}

static void spec_vectors(void) {
  check_valid("spec vector 1 (Ed25519)", spec1, spec1_id, NOW_2025);
  check_valid("spec vector 2 (ECDSA)", spec2, spec2_id, NOW_2025);
  check_valid("spec vector 3 (secp256k1)", spec3, spec3_id, NOW_2025);
  check_invalid("spec vector 4 (key mismatch)", spec4, NP_ECRYPTO, NOW_2025);
  /* The vectors are valid 1975-01-01T13:00Z .. 4096-01-01T13:00Z. */
  check_valid("spec vector 1 today", spec1, spec1_id, (int64_t)time(NULL));
  check_invalid("spec vector 1 in 1970", spec1, NP_ECRYPTO, 0);
  check_valid("spec vector 1 one second into 1975-01-01T13:00Z", spec1,
              spec1_id, 157813200);
  check_invalid("spec vector 1 one second before 1975-01-01T13:00Z", spec1,
                NP_ECRYPTO, 157813199);
  check_invalid("spec vector 1 after 4096-01-01T13:00Z", spec1, NP_ECRYPTO,
                (int64_t)67090712400 + 1);
}

static void generated_vectors(void) {
  check_valid("RSA host key", gen_rsa_host, gen_rsa_host_id, NOW_2025);
  check_valid("ECDSA P-256 host key", gen_p256_host, gen_p256_host_id,
              NOW_2025);
  check_valid("critical libp2p extension (rust-libp2p)", gen_crit_libp2p,
              gen_crit_libp2p_id, NOW_2025);
  check_valid("non-critical unknown extension", gen_noncrit_unknown,
              gen_noncrit_unknown_id, NOW_2025);
  check_valid("P-384 certificate key", gen_p384_cert, gen_p384_cert_id,
              NOW_2025);
  check_valid("Ed25519 certificate key", gen_ed25519_cert, gen_ed25519_cert_id,
              NOW_2025);
  check_invalid("critical unknown extension", gen_crit_unknown, NP_EPROTO,
                NOW_2025);
  check_invalid("expired certificate", gen_expired, NP_ECRYPTO, NOW_2025);
  check_invalid("duplicate libp2p extension", gen_dup_ext, NP_EPROTO, NOW_2025);
  check_invalid("no libp2p extension", gen_no_ext, NP_EPROTO, NOW_2025);
  check_invalid("bad host-key signature", gen_bad_host_sig, NP_ECRYPTO,
                NOW_2025);
}

/* Index of the first occurrence of |pat| in |hay|, or -1. */
static long find(const uint8_t *hay, size_t n, const uint8_t *pat, size_t m) {
  for (size_t i = 0; i + m <= n; i++)
    if (memcmp(hay + i, pat, m) == 0)
      return (long)i;
  return -1;
}

static void own_certificate(void) {
  static const uint8_t oid[] = {0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04,
                                0x01, 0x83, 0xa2, 0x5a, 0x01, 0x01};
  np_identity idn;
  np_tls *t = NULL;
  np_peerid got;
  const uint8_t *cert;
  uint8_t copy[2048];
  size_t len;
  long at;
  int64_t now = (int64_t)time(NULL);
  int rv;

  ok(np_identity_generate(&idn) == 0, "identity generated");
  ok(np_tls_new(&t, &idn) == 0, "np_tls_new builds a certificate");
  if (t == NULL)
    return;
  cert = np_tls_cert(t, &len);
  ok(len > 300 && len < sizeof(copy), "own certificate is %zu bytes", len);
  memset(&got, 0, sizeof(got));
  is_int(np_tls_verify_cert(cert, len, now, &got), 0,
         "own certificate verifies");
  ok(np_peerid_equal(&got, &idn.id), "own certificate yields our peer ID");
  /* go-libp2p backdates by an hour for clock skew; so do we. */
  is_int(np_tls_verify_cert(cert, len, now - 3000, NULL), 0,
         "own certificate is valid 50 minutes ago");
  is_int(np_tls_verify_cert(cert, len, now + (int64_t)99 * 365 * 86400, NULL),
         0, "own certificate is valid in 99 years");

  memcpy(copy, cert, len);
  copy[len - 1] ^= 0x01;
  rv = np_tls_verify_cert(copy, len, now, NULL);
  ok(rv == NP_ECRYPTO || rv == NP_EPROTO,
     "flipped bit in the self-signature is rejected (%s)", np_errname(rv));

  at = find(cert, len, oid, sizeof(oid));
  ok(at > 0, "own certificate carries the libp2p extension");
  if (at > 0) {
    /* OID, 04 6a, SignedKey 30 68 {04 24 PublicKey, 04 40 signature}: the
     * extension ends with the host signature. (The self-signature covers
     * it too, so this also fails there; gen_bad_host_sig fails only on the
     * host signature.) */
    size_t ext_end = (size_t)at + sizeof(oid) + 2 + 2 + 104;
    ok(ext_end <= len, "extension fits in the certificate");
    memcpy(copy, cert, len);
    copy[ext_end - 1] ^= 0x80;
    rv = np_tls_verify_cert(copy, len, now, NULL);
    ok(rv == NP_ECRYPTO, "flipped bit in the host signature is rejected (%s)",
       np_errname(rv));
    memcpy(copy, cert, len);
    copy[(size_t)at + sizeof(oid) + 10] ^= 0x01; /* inside the public key */
    rv = np_tls_verify_cert(copy, len, now, NULL);
    ok(rv != 0, "flipped bit in the host public key is rejected (%s)",
       np_errname(rv));
    memcpy(copy, cert, len);
    copy[at + 11] ^= 0x02; /* the OID's last arc: 1.1 -> 1.3 */
    rv = np_tls_verify_cert(copy, len, now, NULL);
    ok(rv == NP_EPROTO, "renamed libp2p extension is rejected (%s)",
       np_errname(rv));
  }
  np_tls_del(t);
  np_identity_clear(&idn);
}

static void malformed_inputs(void) {
  size_t n = unhex(spec1, buf, sizeof(buf)), bad = 0;
  uint8_t big[NP_TLS_CERT_MAX + 1];
  uint8_t *copy = malloc(n);
  is_int(np_tls_verify_cert(NULL, 0, NOW_2025, NULL), NP_EINVAL,
         "NULL input is NP_EINVAL");
  memset(big, 0, sizeof(big));
  is_int(np_tls_verify_cert(big, sizeof(big), NOW_2025, NULL), NP_ELIMIT,
         "input over NP_TLS_CERT_MAX is NP_ELIMIT");
  /* Every truncation, each in an exact-size buffer (ASan sees overreads). */
  for (size_t i = 0; i < n; i++) {
    memcpy(copy, buf, i);
    if (np_tls_verify_cert(copy, i, NOW_2025, NULL) == 0)
      bad++;
  }
  is_int(bad, 0, "all %zu truncations of vector 1 are rejected", n);
  /* Every single-bit flip in the to-be-signed part or signature fails. */
  bad = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(copy, buf, n);
    copy[i] ^= 0x01;
    if (np_tls_verify_cert(copy, n, NOW_2025, NULL) == 0)
      bad++;
  }
  is_int(bad, 0, "all %zu one-bit flips of vector 1 are rejected", n);
  memcpy(copy, buf, n);
  copy[n - 1] ^= 0x01;
  is_int(np_tls_verify_cert(copy, n, NOW_2025, NULL), NP_ECRYPTO,
         "flipped bit in vector 1's self-signature is NP_ECRYPTO");
  free(copy);
}

int main(void) {
  np_log_set_level(NP_LOG_ERROR);
  spec_vectors();
  generated_vectors();
  own_certificate();
  malformed_inputs();
  np_crypto_cleanup();
  return done_testing();
}
