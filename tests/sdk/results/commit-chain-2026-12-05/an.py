import collections,statistics,sys
ev=collections.defaultdict(dict)  # (node,stage,index) -> first ts
pids={}
for n in (1,2,3):
    for line in open(f'node{n}.log',errors='replace'):
        if not line.startswith('KTR '): continue
        _,pid,st,idx,us=line.split()
        key=(n,st,int(idx))
        if key not in ev: ev[key]=int(us)
# leader = node with prop_done
leader=max((1,2,3),key=lambda n: sum(1 for k in ev if k[0]==n and k[1]=='prop_done'))
fol=[n for n in (1,2,3) if n!=leader]
print('leader',leader)
idxs=sorted(k[2] for k in ev if k[0]==leader and k[1]=='prop_done')
idxs=idxs[len(idxs)//5:]  # skip warm-up
rows=collections.defaultdict(list)
def g(n,st,i): return ev.get((n,st,i))
for i in idxs:
    t0=g(leader,'prop_start',i); la=g(leader,'ls_append',i); done=g(leader,'prop_done',i)
    ae=g(leader,'apply_start',i); ad=g(leader,'apply_end',i)
    lf=g(leader,'fsync_done',i)
    if None in (t0,la,done,ae,ad): continue
    rows['leader: propose -> log append']. append(la-t0)
    if lf: rows['leader: append -> own fsync done'].append(lf-la)
    firsts=[]
    for f in fol:
        s=g(leader,'net_send_e',i); r=g(f,'svc_recv_e',i); fa=g(f,'ls_append',i); fs=g(f,'fsync_start',i); fd=g(f,'fsync_done',i); fr=g(f,'svc_resp_e',i); lr=g(leader,'net_resp_e',i)
        if None in (s,r,fa,fd,fr,lr): continue
        rows['leader append -> net send'].append(s-la)
        rows['net send -> follower recv'].append(r-s)
        rows['follower recv -> its append'].append(fa-r)
        if fs: rows['follower append -> fsync start'].append(fs-fa); rows['follower fsync'].append(fd-fs)
        rows['follower fsync done -> resp sent'].append(fr-fd)
        rows['follower resp sent -> leader got it'].append(lr-fr)
        firsts.append(lr)
    if firsts:
        rows['first resp -> apply start (commit)'].append(ae-min(firsts))
    rows['apply'].append(ad-ae)
    rows['apply end -> propose returns'].append(done-ad)
    rows['TOTAL propose -> returns'].append(done-t0)
for k,v in rows.items():
    v.sort(); print(f"{k:40s} n={len(v):5d} p50={statistics.median(v):7.0f} us  p90={v[int(len(v)*.9)]:7.0f}")
