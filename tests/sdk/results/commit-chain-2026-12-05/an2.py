import collections,statistics,sys
d=sys.argv[1]
for n in (1,2,3):
    ev={}
    for line in open(f'{d}/node{n}.log',errors='replace'):
        if not line.startswith('KTR '): continue
        _,pid,st,idx,us=line.split(); k=(st,int(idx))
        if k not in ev: ev[k]=int(us)
    if not any(s=='prop_done' for (s,i) in ev): continue
    print('leader node',n)
    rows=collections.defaultdict(list)
    idx=sorted(i for (s,i) in ev if s=='prop_done'); idx=idx[len(idx)//5:]
    for i in idx:
        g=lambda s: ev.get((s,i))
        ae,pd,ps=g('apply_end'),g('prop_done'),g('prop_start')
        if ae is None: continue
        rows['propose -> apply_end'].append(ae-ps)
        if g('fe_wtc_done') is not None:
            rows['WTC: apply_end -> prop_done'].append(pd-ae)
            rows['WTC: apply_end -> reply built'].append(g('fe_wtc_reply')-ae)
        if g('fe_wtr_start') is not None and g('fe_wtc_done') is None:
            rows['POLL: apply_end -> poll handler resumes'].append(g('fe_wtr_start')-ae)
            if g('fe_poll_reply'): rows['POLL: apply_end -> reply built'].append(g('fe_poll_reply')-ae)
    for k,v in rows.items():
        v.sort(); print(f"{k:45s} n={len(v):5d} p50={statistics.median(v):6.0f} p90={v[int(len(v)*.9)]:6.0f}")
