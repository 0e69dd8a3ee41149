#!/usr/bin/env python3
# Seeds of tests/fuzz/corpus/kadstore, written by an encoder independent of
# np_kadstore.c (zlib CRC-32), so test_kadstore also checks the format.
# Run from the source root.
import struct, zlib, os
d='tests/fuzz/corpus/kadstore'
pub=bytes.fromhex("080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
pid=bytes([0,len(pub)])+pub
def ent(t,b): h=struct.pack('>BI',t,len(b)); return h+struct.pack('>I',zlib.crc32(h+b))+b
def rec(key,val,rcv=10,exp=10**9): return ent(1,struct.pack('>QQH',rcv,exp,len(key))+key+struct.pack('>I',len(val))+val)
def prov(key,idb,exp,addrs): 
    b=struct.pack('>H',len(key))+key+bytes([len(idb)])+idb+struct.pack('>Q',exp)+bytes([len(addrs)])
    for a in addrs: b+=struct.pack('>H',len(a))+a
    return ent(2,b)
def f(ents,ver=1): return b'NPKS'+struct.pack('>HH',ver,0)+b''.join(ents)+ent(0,struct.pack('>I',len(ents)))
ma=bytes.fromhex("047f000001060fa1")  # /ip4/127.0.0.1/tcp/4001
w=lambda n,b: open(os.path.join(d,n),'wb').write(b)
w('empty.bin', f([]))
w('pk_record.bin', f([rec(b'/pk/'+pid,pub)]))
w('providers.bin', f([prov(b'/providers/x',pid,10**9,[ma,ma]), prov(b'/providers/x',bytes([0,1,7]),10**9,[])]))
w('mixed.bin', f([rec(b'/pk/'+pid,pub), prov(b'k',pid,10**9,[ma]), rec(b'/pk/'+pid,pub,exp=5), rec(b'/other/x',b'v')]))
w('expired.bin', f([rec(b'/pk/'+pid,pub,exp=500), prov(b'k',pid,5,[ma])]))
w('bad_pk.bin', f([rec(b'/pk/'+pid,pub[:-1]+b'\0')]))
w('version2.bin', f([],ver=2))
w('dup_record.bin', f([rec(b'/pk/'+pid,pub), rec(b'/pk/'+pid,pub)]))
w('truncated.bin', f([rec(b'/pk/'+pid,pub)])[:-3])
